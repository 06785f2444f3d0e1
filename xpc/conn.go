package xpc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Channel is an HTTP/2 stream that carries XPC messages (xpc.md §1.2).
type Channel uint32

const (
	// RootChannel (stream 1) carries requests, one-way messages, the RSD
	// Handshake and events.
	RootChannel Channel = 1
	// ReplyChannel (stream 3) carries replies, from the device to the host.
	ReplyChannel Channel = 3
)

func (c Channel) String() string {
	switch c {
	case RootChannel:
		return "root channel (stream 1)"
	case ReplyChannel:
		return "reply channel (stream 3)"
	}
	return fmt.Sprintf("stream %d", uint32(c))
}

// Defaults for Config fields left zero.
const (
	// DefaultWindowSize is the INITIAL_WINDOW_SIZE macOS remoted and
	// CoreDeviceService advertise (xpc.md §1.3).
	DefaultWindowSize = 1 << 20
	// DefaultMaxQueued bounds the bytes of received messages waiting for
	// Receive before the connection stops reading from the peer.
	DefaultMaxQueued = 4 << 20
	// DefaultFrameTimeout bounds how long a peer may stall inside one frame.
	DefaultFrameTimeout = 30 * time.Second
	// maxFrameSend is the largest DATA payload we send: the default
	// SETTINGS_MAX_FRAME_SIZE; iOS resets connections for larger frames
	// (xpc.md §1.4).
	maxFrameSend = 16384
	// maxControlBacklog bounds queued control frames (SETTINGS and PING
	// ACKs); past it we stop reading until the peer reads ours.
	maxControlBacklog = 64 << 10
	// maxBatch bounds the bytes handed to the writer at once.
	maxBatch = 64 << 10
)

// Config configures a Conn. A nil *Config means all defaults.
type Config struct {
	// Name identifies the connection in errors and logs (for example
	// "rsd 127.0.0.1:58783"); default: the remote address.
	Name string
	// Logger receives debug logs of frames and setup; nil discards.
	Logger *slog.Logger
	// WindowSize is the INITIAL_WINDOW_SIZE we advertise and the connection
	// window we open; 0 means DefaultWindowSize. Must be ≥ 16384 (go-ios uses
	// the server's value as its maximum frame size, xpc.md §1.3).
	WindowSize uint32
	// Decode bounds incoming messages (DecodeOptions.MaxBody also bounds
	// per-stream reassembly).
	Decode DecodeOptions
	// MaxQueued bounds received-but-unread message bytes; 0 means
	// DefaultMaxQueued. At least one message is always accepted.
	MaxQueued int
	// FrameTimeout bounds a stall inside one HTTP/2 frame; 0 means
	// DefaultFrameTimeout. Waiting between frames is not bounded here.
	FrameTimeout time.Duration
	// HeaderReply is the body of the server's stream-1 mirror of the
	// client's opening HEADER message; nil sends an empty dictionary. A
	// service such as the untrusted tunnel service puts {"ServiceVersion": 2}
	// there: pymobiledevice3 reads it from the first non-empty dictionary it
	// receives, go-ios consumes the mirror and ignores its body (tunnel.md
	// §5.2). Ignored in the client role.
	HeaderReply *Dict
}

func (c *Config) withDefaults(nc net.Conn) Config {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.Name == "" {
		cfg.Name = "conn"
		if a := nc.RemoteAddr(); a != nil {
			cfg.Name = a.String()
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WindowSize == 0 {
		cfg.WindowSize = DefaultWindowSize
	}
	cfg.WindowSize = max(cfg.WindowSize, 16384)
	if cfg.WindowSize > 1<<31-1 {
		cfg.WindowSize = 1<<31 - 1
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = DefaultFrameTimeout
	}
	return cfg
}

// ConnError is an error that ended a connection, or a failed call on one. It
// names the connection, what was being done (a setup step or a frame) and
// the cause. Errors after Close unwrap to net.ErrClosed.
type ConnError struct {
	Conn string
	Op   string
	Err  error
}

func (e *ConnError) Error() string { return fmt.Sprintf("xpc: %s: %s: %v", e.Conn, e.Op, e.Err) }
func (e *ConnError) Unwrap() error { return e.Err }

// ProtocolError is a violation of RemoteXPC by the peer; Code is the HTTP/2
// error code we sent in GOAWAY.
type ProtocolError struct {
	Code http2.ErrCode
	Msg  string
}

func (e *ProtocolError) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Msg) }

// PeerError reports a GOAWAY or RST_STREAM from the peer.
type PeerError struct {
	Frame  string // "GOAWAY" or "RST_STREAM on stream n"
	Code   http2.ErrCode
	Detail string
}

func (e *PeerError) Error() string {
	s := fmt.Sprintf("peer sent %s %s", e.Frame, e.Code)
	if e.Detail != "" {
		s += fmt.Sprintf(" (%q)", e.Detail)
	}
	return s
}

// Conn is one RemoteXPC connection in either role. Its methods are safe for
// concurrent use. Close ends it; calls in flight then return an error that
// unwraps to net.ErrClosed.
type Conn struct {
	nc     net.Conn
	cfg    Config
	client bool

	// Owner-goroutine inputs.
	frames     chan readResult
	readMore   chan struct{}
	sendCh     chan *sendOp
	cancelWait chan uint64
	writeDone  chan error
	deliverCh  chan received
	closeCh    chan struct{}

	setupDone chan struct{} // closed by the owner when setup completed
	done      chan struct{} // closed by the owner on exit, after err is set
	err       error         // why the connection ended; read after done

	closeOnce sync.Once
	wg        sync.WaitGroup

	mu       sync.Mutex
	nextID   uint64     // request ids for Request (client role)
	leftover []received // messages queued when the connection ended
	st       *connState
}

type received struct {
	ch  Channel
	msg Message
	n   int
}

// sendOp is one message waiting to be written, owned by the owner goroutine
// once submitted.
type sendOp struct {
	ctx     context.Context
	stream  uint32
	data    []byte
	off     int // bytes already framed
	done    chan error
	replyTo chan Message // non-nil: register a reply waiter for replyID
	replyID uint64
}

// Client runs the host side of a RemoteXPC connection on nc: it writes the
// set-up sequence of xpc.md §1.6 and returns once the peer mirrored the HEADER
// messages on streams 1 and 3 (frida's readiness rule). ctx bounds the set-up
// only. On error nc is closed.
func Client(ctx context.Context, nc net.Conn, cfg *Config) (*Conn, error) {
	return start(ctx, nc, cfg, true)
}

// Server runs the device side on an accepted nc: it sends SETTINGS and
// WINDOW_UPDATE, answers each client set-up frame only after it arrived, and
// returns once the client's PING and INIT_HANDSHAKE were received and
// mirrored (xpc.md §1.7). Only then may the caller send on the root channel
// (an RSD Handshake any earlier makes CoreDeviceService reset stream 3).
func Server(ctx context.Context, nc net.Conn, cfg *Config) (*Conn, error) {
	return start(ctx, nc, cfg, false)
}

func start(ctx context.Context, nc net.Conn, cfg *Config, client bool) (*Conn, error) {
	c := &Conn{
		nc:         nc,
		cfg:        cfg.withDefaults(nc),
		client:     client,
		frames:     make(chan readResult),
		readMore:   make(chan struct{}, 1),
		sendCh:     make(chan *sendOp),
		cancelWait: make(chan uint64),
		writeDone:  make(chan error, 1),
		deliverCh:  make(chan received),
		closeCh:    make(chan struct{}),
		setupDone:  make(chan struct{}),
		done:       make(chan struct{}),
		nextID:     1,
	}
	c.st = newConnState(c)
	c.wg.Add(2)
	go c.readLoop()
	go c.run()
	select {
	case <-c.setupDone:
		return c, nil
	case <-c.done:
		c.Close()
		return nil, c.err
	case <-ctx.Done():
		step := c.st.setupStepSnapshot()
		c.Close()
		return nil, &ConnError{Conn: c.cfg.Name, Op: "set-up: " + step, Err: context.Cause(ctx)}
	}
}

// Name returns the connection's name as used in errors.
func (c *Conn) Name() string { return c.cfg.Name }

// Done is closed when the connection has ended; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it is open.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Close ends the connection and returns after its goroutines exited. It is
// idempotent and safe to call concurrently. Blocked calls return an error
// wrapping net.ErrClosed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { close(c.closeCh) })
	<-c.done
	c.wg.Wait()
	return nil
}

// Send writes m on ch and returns once it was written to the network. It
// splits the message into DATA frames of at most 16384 bytes within the
// peer's flow-control windows. If ctx ends before any byte of m went out, m
// is withdrawn; after that it is completed in the background (cutting it
// would corrupt the stream) and Send returns ctx's error.
func (c *Conn) Send(ctx context.Context, ch Channel, m *Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return &ConnError{Conn: c.cfg.Name, Op: "send on " + ch.String(), Err: err}
	}
	return c.submit(ctx, &sendOp{ctx: ctx, stream: uint32(ch), data: b, done: make(chan error, 1)})
}

func (c *Conn) submit(ctx context.Context, op *sendOp) error {
	select {
	case c.sendCh <- op:
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return &ConnError{Conn: c.cfg.Name, Op: fmt.Sprintf("send on stream %d", op.stream), Err: context.Cause(ctx)}
	}
	select {
	case err := <-op.done:
		return err
	case <-c.done:
		// run answers every write it finished before closing done, so a
		// message that reached the peer just before the peer hung up is
		// reported sent, not failed.
		select {
		case err := <-op.done:
			return err
		default:
			return c.err
		}
	case <-ctx.Done():
		return &ConnError{Conn: c.cfg.Name, Op: fmt.Sprintf("send on stream %d", op.stream), Err: context.Cause(ctx)}
	}
}

// Request sends body on the root channel as a request wanting a reply
// (flags 0x00010101) and waits for the reply with the same message id on
// the reply channel (xpc.md §1.8). Ids count up from 1.
func (c *Conn) Request(ctx context.Context, body *Dict) (Message, error) {
	c.mu.Lock()
	id := c.nextID
	c.nextID++
	c.mu.Unlock()
	m := Message{Flags: FlagsRequest, ID: id, Body: body}
	b, err := m.AppendBinary(nil)
	if err != nil {
		return Message{}, &ConnError{Conn: c.cfg.Name, Op: "request", Err: err}
	}
	reply := make(chan Message, 1)
	op := &sendOp{ctx: ctx, stream: uint32(RootChannel), data: b, done: make(chan error, 1), replyTo: reply, replyID: id}
	if err := c.submit(ctx, op); err != nil {
		c.dropWaiter(id)
		return Message{}, err
	}
	select {
	case r := <-reply:
		return r, nil
	case <-c.done:
		// A reply that arrived just before the end is still the answer.
		select {
		case r := <-reply:
			return r, nil
		default:
			return Message{}, c.err
		}
	case <-ctx.Done():
		c.dropWaiter(id)
		return Message{}, &ConnError{Conn: c.cfg.Name, Op: fmt.Sprintf("waiting for reply to request %d", id), Err: context.Cause(ctx)}
	}
}

func (c *Conn) dropWaiter(id uint64) {
	select {
	case c.cancelWait <- id:
	case <-c.done:
	}
}

// Reply answers req on the reply channel with flags 0x00020101 and req's id.
func (c *Conn) Reply(ctx context.Context, req Message, body *Dict) error {
	return c.Send(ctx, ReplyChannel, &Message{Flags: FlagsReplyMsg, ID: req.ID, Body: body})
}

// Receive returns the next message from the peer that is not a set-up
// message and not a reply claimed by Request, with the channel it came on.
// Unread messages are queued up to Config.MaxQueued bytes; beyond that the
// connection stops reading from the peer until Receive is called. Messages
// that arrived before the connection ended are returned before its error.
func (c *Conn) Receive(ctx context.Context) (Message, Channel, error) {
	select {
	case r := <-c.deliverCh:
		return r.msg, r.ch, nil
	case <-c.done:
		// Messages that arrived before the end are still delivered.
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.leftover) > 0 {
			r := c.leftover[0]
			c.leftover = c.leftover[1:]
			return r.msg, r.ch, nil
		}
		return Message{}, 0, c.err
	case <-ctx.Done():
		return Message{}, 0, &ConnError{Conn: c.cfg.Name, Op: "receive", Err: context.Cause(ctx)}
	}
}
