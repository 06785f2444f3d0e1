package afc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
)

// ClientConfig configures a Client. The zero value is usable.
type ClientConfig struct {
	// Timeout bounds the wait for each reply once its request is on the
	// wire, and each request's write when the caller's context has no
	// deadline; 0 means DefaultTimeout.
	Timeout time.Duration
	// ChunkSize is the size of each READ and WRITE of the bulk transfers
	// (WriteFile, ReadFile, Push, Pull); 0 means DefaultChunkSize.
	ChunkSize int
	// Window is how many bulk READs or WRITEs of one file may be in
	// flight at once; 0 means DefaultWindow.
	Window int
	// MaxReply bounds the data part of a reply other than READ's (a
	// directory listing, a stat); 0 means DefaultMaxReply.
	MaxReply int
}

// Defaults of ClientConfig.
const (
	DefaultTimeout   = 60 * time.Second
	DefaultChunkSize = 4 << 20 // appium's READ and WRITE size, pmd3's READ size
	DefaultWindow    = 8
	DefaultMaxReply  = 64 << 20
	// maxArgs bounds a reply's header part: replies carry at most one u64.
	maxArgs = 64 << 10
	// maxQueued bounds the requests in flight on one connection.
	maxQueued = 256
)

// Client is the host role on one connection to the service (an AFC
// connection from services/reach, or a house_arrest connection after its
// vend). Requests are pipelined: any number of goroutines may call it at
// once, each request goes on the wire as soon as it is made, and the
// device's replies, which come in request order, are matched to them by
// order and checked against the echoed packet number. Close fails calls in
// flight.
type Client struct {
	conn net.Conn
	cfg  ClientConfig

	wmu   sync.Mutex // one request on the wire at a time; guards num
	num   uint64
	queue chan *call // requests on the wire, oldest first

	errMu sync.Mutex
	err   error // first permanent error; the stream cannot resync after it

	closing   chan struct{}
	closeOnce sync.Once
	done      chan struct{} // closed when the reader exits
}

// call is one request awaiting its reply.
type call struct {
	num  uint64
	op   Opcode
	path string
	// buf, if set, receives a DATA reply's bytes (READ into a caller's
	// buffer); a larger reply is a protocol error.
	buf  []byte
	done chan struct{}

	mu        sync.Mutex // held by the reader while it fills buf
	abandoned bool       // the caller stopped waiting: discard the reply

	// Results, valid once done is closed.
	op2  Opcode // the reply's opcode
	args []byte
	data []byte
	err  error
}

// NewClient starts a client on conn, positioned at the service's first
// byte. It starts one goroutine, which Close stops.
func NewClient(conn net.Conn, cfg *ClientConfig) *Client {
	c := &Client{conn: conn, queue: make(chan *call, maxQueued), closing: make(chan struct{}), done: make(chan struct{})}
	if cfg != nil {
		c.cfg = *cfg
	}
	if c.cfg.Timeout <= 0 {
		c.cfg.Timeout = DefaultTimeout
	}
	if c.cfg.ChunkSize <= 0 {
		c.cfg.ChunkSize = DefaultChunkSize
	}
	if c.cfg.Window <= 0 {
		c.cfg.Window = DefaultWindow
	}
	if c.cfg.MaxReply <= 0 {
		c.cfg.MaxReply = DefaultMaxReply
	}
	go c.readLoop()
	return c
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = fmt.Errorf("afc: client closed: %w", net.ErrClosed)

// Close closes the connection and waits for the reader; calls in flight
// fail with ErrClosed. It is idempotent.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.fail(ErrClosed)
		close(c.closing)
		err = c.conn.Close()
	})
	<-c.done
	return err
}

// fail records the first permanent error and closes the connection so
// that writers and the reader stop.
func (c *Client) fail(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
		c.conn.Close()
	}
	c.errMu.Unlock()
}

func (c *Client) permanent() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// start puts one request on the wire and returns its call. data is the
// data part (WRITE's bytes); buf, if set, receives a DATA reply.
func (c *Client) start(ctx context.Context, op Opcode, path string, args, data, buf []byte) (*call, error) {
	cl := &call{op: op, path: path, buf: buf, done: make(chan struct{})}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.permanent(); err != nil {
		return nil, err
	}
	cl.num = c.num
	c.num++
	hdr := make([]byte, 0, HeaderSize+len(args))
	hdr = append(AppendHeader(hdr, cl.num, op, len(args), len(data)), args...)
	select {
	case c.queue <- cl:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-c.closing:
		return nil, ErrClosed
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(c.cfg.Timeout)
	}
	c.conn.SetWriteDeadline(dl)
	stop := deadline.Interrupt(ctx, c.conn.SetWriteDeadline)
	bufs := net.Buffers{hdr}
	if len(data) > 0 {
		bufs = append(bufs, data)
	}
	_, err := bufs.WriteTo(c.conn)
	if !stop() && err != nil {
		err = errors.Join(context.Cause(ctx), err)
	}
	if err != nil {
		// Part of a packet may be on the wire: the stream is lost.
		err = fmt.Errorf("afc: %s: send: %w", op, err)
		c.fail(err)
		return nil, err
	}
	return cl, nil
}

// wait waits for cl's reply. If ctx ends first the reply is discarded
// when it comes.
func (c *Client) wait(ctx context.Context, cl *call) error {
	select {
	case <-cl.done:
		return cl.err
	case <-ctx.Done():
		cl.mu.Lock()
		cl.abandoned = true
		cl.mu.Unlock()
		select {
		case <-cl.done:
			return cl.err
		default:
		}
		return fmt.Errorf("afc: %s: %w", cl.op, context.Cause(ctx))
	}
}

// do sends one request and waits for its reply.
func (c *Client) do(ctx context.Context, op Opcode, path string, args, data, buf []byte) (*call, error) {
	cl, err := c.start(ctx, op, path, args, data, buf)
	if err != nil {
		return nil, err
	}
	return cl, c.wait(ctx, cl)
}

// readLoop reads replies in order and completes the oldest call with each.
func (c *Client) readLoop() {
	defer close(c.done)
	hdr := make([]byte, HeaderSize)
	for {
		var cl *call
		select {
		case cl = <-c.queue:
		case <-c.closing:
			c.drain()
			return
		}
		if err := c.permanent(); err != nil {
			cl.err = err
			close(cl.done)
			c.drain()
			return
		}
		c.conn.SetReadDeadline(time.Now().Add(c.cfg.Timeout))
		err := c.readReply(cl, hdr)
		if err != nil {
			if c.permanent() == nil {
				err = fmt.Errorf("afc: %s: reading the reply: %w", cl.op, err)
			} else {
				err = c.permanent()
			}
			c.fail(err)
			cl.err = err
			close(cl.done)
			c.drain()
			return
		}
		close(cl.done)
	}
}

// drain fails every call still queued, including any a writer adds
// before it sees the permanent error.
func (c *Client) drain() {
	err := c.permanent()
	if err == nil {
		err = ErrClosed
	}
	flush := func() {
		for {
			select {
			case cl := <-c.queue:
				cl.err = err
				close(cl.done)
			default:
				return
			}
		}
	}
	flush()
	c.wmu.Lock() // no request is between its check of err and its enqueue
	flush()
	c.wmu.Unlock()
}

// readReply reads one packet and fills cl. A reply that does not echo the
// request's number, or whose lengths break the bounds, ends the
// connection: the stream can no longer be trusted to line up.
func (c *Client) readReply(cl *call, hdr []byte) error {
	if _, err := io.ReadFull(c.conn, hdr); err != nil {
		return err
	}
	h, err := ParseHeader(hdr)
	if err != nil {
		return err
	}
	if h.Num != cl.num {
		return fmt.Errorf("reply numbered %d to request %d", h.Num, cl.num)
	}
	if h.ArgsLen() > maxArgs {
		return fmt.Errorf("%w: header part of %d bytes", ErrTooLarge, h.ArgsLen())
	}
	cl.op2 = h.Op
	if h.ArgsLen() > 0 {
		cl.args = make([]byte, h.ArgsLen())
		if _, err := io.ReadFull(c.conn, cl.args); err != nil {
			return err
		}
	}
	n := h.DataLen()
	if n == 0 {
		return nil
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch {
	case cl.buf != nil && !cl.abandoned:
		if n > uint64(len(cl.buf)) {
			return fmt.Errorf("%w: %d bytes of data for a %d-byte read", ErrTooLarge, n, len(cl.buf))
		}
		if _, err := io.ReadFull(c.conn, cl.buf[:n]); err != nil {
			return err
		}
		cl.data = cl.buf[:n]
	case cl.buf != nil: // abandoned READ: keep the stream aligned
		if n > uint64(len(cl.buf)) {
			return fmt.Errorf("%w: %d bytes of data for a %d-byte read", ErrTooLarge, n, len(cl.buf))
		}
		if _, err := io.CopyN(io.Discard, c.conn, int64(n)); err != nil {
			return err
		}
	default:
		if n > uint64(c.cfg.MaxReply) {
			return fmt.Errorf("%w: %d bytes of data, at most %d", ErrTooLarge, n, c.cfg.MaxReply)
		}
		cl.data = make([]byte, n)
		if _, err := io.ReadFull(c.conn, cl.data); err != nil {
			return err
		}
	}
	return nil
}

// status interprets cl's reply as a STATUS: nil for success, *Error
// otherwise. Devices put the code in the header part; a reply carrying it
// in the data part (what pmd3 and appium would also read) is accepted.
func (cl *call) status() error {
	if cl.op2 != OpStatus {
		return fmt.Errorf("afc: %s: got a %s reply, want STATUS", cl.op, cl.op2)
	}
	v, ok := u64(cl.args, 0)
	if !ok {
		if v, ok = u64(cl.data, 0); !ok {
			return fmt.Errorf("afc: %s: STATUS reply without a code", cl.op)
		}
	}
	if Status(v) == StatusSuccess {
		return nil
	}
	return &Error{Op: cl.op, Path: cl.path, Status: Status(v)}
}

// payload interprets cl's reply as DATA (or a STATUS error).
func (cl *call) payload() ([]byte, error) {
	switch cl.op2 {
	case OpData:
		if len(cl.args) > 0 && len(cl.data) == 0 { // data in the header part
			return cl.args, nil
		}
		return cl.data, nil
	case OpStatus:
		if err := cl.status(); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return nil, fmt.Errorf("afc: %s: got a %s reply, want DATA", cl.op, cl.op2)
}

// value interprets cl's reply as a one-u64 reply of kind want
// (FILE_OPEN_RES, FILE_TELL_RES) or a STATUS error.
func (cl *call) value(want Opcode) (uint64, error) {
	switch cl.op2 {
	case want:
		v, ok := u64(cl.args, 0)
		if !ok {
			if v, ok = u64(cl.data, 0); !ok {
				return 0, fmt.Errorf("afc: %s: %s reply without a value", cl.op, want)
			}
		}
		return v, nil
	case OpStatus:
		if err := cl.status(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("afc: %s: STATUS success instead of %s", cl.op, want)
	}
	return 0, fmt.Errorf("afc: %s: got a %s reply, want %s", cl.op, cl.op2, want)
}

// simple sends a request answered by STATUS.
func (c *Client) simple(ctx context.Context, op Opcode, path string, args []byte) error {
	cl, err := c.do(ctx, op, path, args, nil, nil)
	if err != nil {
		return err
	}
	return cl.status()
}

func le64(vs ...uint64) []byte {
	b := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}
