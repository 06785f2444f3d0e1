package dylib

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/xpc"
)

// ClientConfig configures iosmux's side of one dylib connection.
type ClientConfig struct {
	// Builds are the CDS builds iosmux knows; a dylib reporting another
	// is refused (ERROR "build") unless AcceptUnknownBuilds is set.
	Builds              []Build
	AcceptUnknownBuilds bool
	// Allow is the allow-list sent in HELLO_ACK (full action ids).
	Allow []string
	// Action answers one ACTION_REQUEST; ctx ends at the answer deadline.
	// Required.
	Action func(ctx context.Context, req *xpc.Dict) ActionResponse
	// Deadline bounds one answer; 0 means DefaultDeadline. After it the
	// request is answered passthrough (the dylib gives up at its own,
	// longer, deadline anyway).
	Deadline time.Duration
	// HandshakeTimeout bounds HELLO/HELLO_ACK; 0 means 5 s.
	HandshakeTimeout time.Duration
	// Logger receives the dylib's LOG lines and protocol errors; nil
	// discards.
	Logger *slog.Logger
}

// DefaultDeadline is iosmux's time to answer a request: under the dylib's
// default wait of 1.5 s, leaving room for the socket.
const DefaultDeadline = time.Second

// Client is iosmux's side of a connection to one dylib: it answers the
// dylib's action requests and pushes device changes to it. Methods are safe
// for concurrent use.
type Client struct {
	conn  *Conn
	cfg   ClientConfig
	log   *slog.Logger
	hello Hello

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// ErrUnknownBuild means the dylib runs in a CDS build iosmux does not know.
var ErrUnknownBuild = errors.New("dylib: unknown CoreDeviceService build")

// UnknownBuildError is NewClient's refusal of a dylib in a build not in
// ClientConfig.Builds; it errors.Is ErrUnknownBuild.
type UnknownBuildError struct {
	Build Build
	PID   int64
}

func (e *UnknownBuildError) Error() string {
	return fmt.Sprintf("%v: %v (pid %d)", ErrUnknownBuild, e.Build, e.PID)
}

func (e *UnknownBuildError) Is(target error) bool { return target == ErrUnknownBuild }

// NewClient runs the handshake on nc (the dylib speaks first: HELLO, then
// HELLO_ACK with devices, the ids of the devices already attached) and
// starts serving the dylib's requests until Close, ctx's end, or the
// connection's.
func NewClient(ctx context.Context, nc net.Conn, cfg ClientConfig, devices []xpc.UUID) (*Client, error) {
	if cfg.Action == nil {
		return nil, errors.New("dylib: ClientConfig.Action is required")
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = DefaultDeadline
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{conn: NewConn(nc), cfg: cfg, log: log}
	stop := deadline.Interrupt(ctx, nc.SetReadDeadline)
	nc.SetReadDeadline(deadline.Earliest(ctx, cfg.HandshakeTimeout))
	f, err := c.conn.ReadFrame()
	stop()
	nc.SetReadDeadline(time.Time{})
	if err == nil && f.Kind != KindHello {
		err = &ProtocolError{Code: "message", Msg: fmt.Sprintf("got %v before HELLO", f.Kind)}
	}
	if err == nil {
		c.hello, err = ParseHello(f.Payload)
	}
	if err == nil && c.hello.Protocol != Protocol {
		err = &ProtocolError{Code: "version", Msg: fmt.Sprintf("protocol %d, iosmux speaks %d", c.hello.Protocol, Protocol)}
	}
	if err == nil && !cfg.AcceptUnknownBuilds && !slices.Contains(cfg.Builds, c.hello.Build) {
		c.conn.WriteFrame(Frame{Kind: KindError, Payload: Error{Code: "build", Msg: "unknown build: " + c.hello.Build.String()}.Value()}, time.Second)
		nc.Close()
		return nil, &UnknownBuildError{Build: c.hello.Build, PID: c.hello.PID}
	}
	if err != nil {
		c.conn.Fail(err)
		return nil, fmt.Errorf("dylib: handshake: %w", err)
	}
	ids := make([]string, len(devices))
	for i, u := range devices {
		ids[i] = u.String()
	}
	ack := HelloAck{Protocol: Protocol, Allow: cfg.Allow, DeviceIDs: ids}
	if err := c.conn.WriteFrame(Frame{Kind: KindHelloAck, Flags: FlagResponse, Correlation: f.Correlation, Payload: ack.Value()}, cfg.HandshakeTimeout); err != nil {
		nc.Close()
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	c.wg.Go(c.run)
	return c, nil
}

// Hello returns the dylib's greeting.
func (c *Client) Hello() Hello { return c.hello }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.ctx.Done() }

// Err is why the connection ended (nil while it runs).
func (c *Client) Err() error {
	if c.ctx.Err() == nil {
		return nil
	}
	return context.Cause(c.ctx)
}

// Close ends the connection and waits for the request handlers.
func (c *Client) Close() error {
	c.stop(net.ErrClosed)
	c.wg.Wait()
	return nil
}

func (c *Client) stop(err error) {
	c.once.Do(func() {
		c.cancel(err)
		c.conn.Close()
	})
}

// Attach sends DEVICE_ATTACH.
func (c *Client) Attach(d RemoteDevice) error { return c.send(KindDeviceAttach, d.Value()) }

// Update sends DEVICE_UPDATE (a full replacement of the device's data).
func (c *Client) Update(d RemoteDevice) error { return c.send(KindDeviceUpdate, d.Value()) }

// Detach sends DEVICE_DETACH.
func (c *Client) Detach(u xpc.UUID) error { return c.send(KindDeviceDetach, DetachValue(u)) }

// Release sends RELEASE_HANDLE for opaque handles iosmux no longer needs.
func (c *Client) Release(ids ...uint64) error {
	a := make(xpc.Array, len(ids))
	for i, id := range ids {
		a[i] = xpc.Uint64(id)
	}
	return c.send(KindReleaseHandle, xpc.NewDict("handles", a))
}

func (c *Client) send(k Kind, payload *xpc.Dict) error {
	if err := c.Err(); err != nil {
		return fmt.Errorf("dylib: %v: connection ended: %w", k, err)
	}
	if err := c.conn.WriteFrame(Frame{Kind: k, Payload: payload}, 5*time.Second); err != nil {
		c.stop(err)
		return err
	}
	return nil
}

// run reads the dylib's frames until the connection ends.
func (c *Client) run() {
	for {
		f, err := c.conn.ReadFrame()
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				c.log.Warn("dylib: protocol error from the dylib", "pid", c.hello.PID, "err", err)
				c.conn.Fail(err)
			}
			c.stop(err)
			return
		}
		switch f.Kind {
		case KindActionRequest:
			req, err := ParseRequest(f.Payload)
			if err != nil {
				c.conn.Fail(err)
				c.stop(err)
				return
			}
			c.wg.Go(func() { c.answer(f.Correlation, req) })
		case KindLog:
			if l, err := ParseLog(f.Payload); err == nil {
				c.log.Info("dylib: "+l.Msg, "pid", c.hello.PID, "level", l.Level)
			}
		case KindError:
			e, _ := ParseError(f.Payload)
			err := fmt.Errorf("dylib: the dylib reported %s: %s", e.Code, e.Msg)
			c.log.Warn(err.Error(), "pid", c.hello.PID)
			c.stop(err)
			return
		default:
			err := &ProtocolError{Code: "kind", Msg: fmt.Sprintf("%v is not sent by a dylib", f.Kind)}
			c.conn.Fail(err)
			c.stop(err)
			return
		}
	}
}

// answer runs the handler within the deadline; a late or missing answer is
// passthrough.
func (c *Client) answer(corr uint64, req *xpc.Dict) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.Deadline)
	defer cancel()
	done := make(chan ActionResponse, 1)
	c.wg.Go(func() { done <- c.cfg.Action(ctx, req) })
	var r ActionResponse
	select {
	case r = <-done:
	case <-ctx.Done():
		r = ActionResponse{Disposition: DispositionPassthrough}
		c.log.Warn("dylib: request not answered in time; passing it through", "pid", c.hello.PID, "deadline", c.cfg.Deadline)
	}
	if err := c.conn.WriteFrame(Frame{Kind: KindActionResponse, Flags: FlagResponse, Correlation: corr, Payload: r.Value()}, c.cfg.Deadline); err != nil {
		c.stop(err)
	}
}
