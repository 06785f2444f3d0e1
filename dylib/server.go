package dylib

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/xpc"
)

// ServerConfig configures the dylib's side of one connection.
type ServerConfig struct {
	Hello Hello
	// Wait bounds one request; 0 means DefaultWait.
	Wait time.Duration
	// HandshakeTimeout bounds HELLO/HELLO_ACK; 0 means 5 s.
	HandshakeTimeout time.Duration
	// OnFrame, if set, sees every frame from iosmux after it was applied
	// (tests watch device changes with it). It must not block.
	OnFrame func(Frame)
}

// DefaultWait is how long the dylib waits for an answer before letting
// CDS's own code run (Mercury's own timeout is unknown; this stays well
// under any UI-visible delay).
const DefaultWait = 1500 * time.Millisecond

// ErrPassthrough wraps every reason a request was not answered by iosmux:
// the dylib then calls CDS's original code.
var ErrPassthrough = errors.New("dylib: passthrough")

// Server is the dylib's side of one connection from iosmux: it keeps what
// iosmux pushed (allow-list, attached devices) and sends requests. Methods
// are safe for concurrent use.
type Server struct {
	conn *Conn
	cfg  ServerConfig
	ack  HelloAck

	mu      sync.Mutex
	devices map[xpc.UUID]RemoteDevice
	ids     map[xpc.UUID]bool // fast-path ids from HELLO_ACK
	pending map[uint64]chan Frame
	next    uint64

	done chan struct{}
	err  error
	once sync.Once
	wg   sync.WaitGroup
}

// NewServer runs the dylib's handshake on an accepted connection (HELLO,
// then HELLO_ACK) and starts reading iosmux's frames.
func NewServer(ctx context.Context, nc net.Conn, cfg ServerConfig) (*Server, error) {
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	s := &Server{conn: NewConn(nc), cfg: cfg, devices: map[xpc.UUID]RemoteDevice{}, ids: map[xpc.UUID]bool{},
		pending: map[uint64]chan Frame{}, next: 1, done: make(chan struct{})}
	if err := s.conn.WriteFrame(Frame{Kind: KindHello, Correlation: 0, Payload: cfg.Hello.Value()}, cfg.HandshakeTimeout); err != nil {
		nc.Close()
		return nil, err
	}
	stop := deadline.Interrupt(ctx, nc.SetReadDeadline)
	nc.SetReadDeadline(time.Now().Add(cfg.HandshakeTimeout))
	f, err := s.conn.ReadFrame()
	stop()
	nc.SetReadDeadline(time.Time{})
	if err == nil && f.Kind == KindError {
		e, _ := ParseError(f.Payload)
		nc.Close()
		return nil, fmt.Errorf("dylib: iosmux refused the dylib: %s: %s", e.Code, e.Msg)
	}
	if err == nil && f.Kind != KindHelloAck {
		err = &ProtocolError{Code: "message", Msg: fmt.Sprintf("got %v, want HELLO_ACK", f.Kind)}
	}
	if err == nil {
		s.ack, err = ParseHelloAck(f.Payload)
	}
	if err == nil && s.ack.Protocol != Protocol {
		err = &ProtocolError{Code: "version", Msg: fmt.Sprintf("protocol %d", s.ack.Protocol)}
	}
	if err != nil {
		s.conn.Fail(err)
		return nil, fmt.Errorf("dylib: handshake: %w", err)
	}
	for _, id := range s.ack.DeviceIDs {
		if u, err := xpc.ParseUUID(id); err == nil {
			s.ids[u] = true
		}
	}
	s.wg.Go(s.run)
	return s, nil
}

// Ack returns iosmux's HELLO_ACK.
func (s *Server) Ack() HelloAck { return s.ack }

// Done is closed when the connection has ended.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close ends the connection; requests in flight fail (passthrough).
func (s *Server) Close() error {
	s.stop(net.ErrClosed)
	s.wg.Wait()
	return nil
}

func (s *Server) stop(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
		s.conn.Close()
	})
}

// Allowed reports whether id is on iosmux's allow-list.
func (s *Server) Allowed(id string) bool { return slices.Contains(s.ack.Allow, id) }

// Attached reports whether u is an iosmux device (attached, or listed in
// HELLO_ACK).
func (s *Server) Attached(u xpc.UUID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.devices[u]
	return ok || s.ids[u]
}

// Device returns the last DEVICE_ATTACH/UPDATE for u.
func (s *Server) Device(u xpc.UUID) (RemoteDevice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[u]
	return d, ok
}

// Request sends ACTION_REQUEST and waits for the response at most the
// configured wait (or ctx). Any failure wraps ErrPassthrough.
func (s *Server) Request(ctx context.Context, req *xpc.Dict) (ActionResponse, error) {
	ch := make(chan Frame, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return ActionResponse{}, fmt.Errorf("%w: socket down: %v", ErrPassthrough, s.err)
	}
	corr := s.next
	s.next++
	s.pending[corr] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, corr)
		s.mu.Unlock()
	}()
	if err := s.conn.WriteFrame(Frame{Kind: KindActionRequest, Correlation: corr, Payload: RequestValue(req)}, s.cfg.Wait); err != nil {
		s.stop(err)
		return ActionResponse{}, fmt.Errorf("%w: %v", ErrPassthrough, err)
	}
	t := time.NewTimer(s.cfg.Wait)
	defer t.Stop()
	select {
	case f := <-ch:
		r, err := ParseActionResponse(f.Payload)
		if err != nil {
			return ActionResponse{}, fmt.Errorf("%w: %v", ErrPassthrough, err)
		}
		return r, nil
	case <-t.C:
		return ActionResponse{}, fmt.Errorf("%w: no answer within %v", ErrPassthrough, s.cfg.Wait)
	case <-ctx.Done():
		return ActionResponse{}, fmt.Errorf("%w: %v", ErrPassthrough, ctx.Err())
	case <-s.done:
		return ActionResponse{}, fmt.Errorf("%w: socket closed while waiting", ErrPassthrough)
	}
}

// Log sends a LOG line.
func (s *Server) Log(level, msg string) error {
	return s.conn.WriteFrame(Frame{Kind: KindLog, Payload: Log{Level: level, Msg: msg}.Value()}, time.Second)
}

func (s *Server) run() {
	for {
		f, err := s.conn.ReadFrame()
		if err == nil {
			err = s.apply(f)
		}
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				s.conn.Fail(err)
			}
			s.stop(err)
			return
		}
		if s.cfg.OnFrame != nil {
			s.cfg.OnFrame(f)
		}
	}
}

func (s *Server) apply(f Frame) error {
	switch f.Kind {
	case KindDeviceAttach, KindDeviceUpdate:
		d, err := ParseDevice(f.Kind, f.Payload)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.devices[d.UUID] = d
		s.mu.Unlock()
	case KindDeviceDetach:
		u, err := ParseDetach(f.Payload)
		if err != nil {
			return err
		}
		s.mu.Lock()
		delete(s.devices, u)
		delete(s.ids, u)
		s.mu.Unlock()
	case KindActionResponse:
		s.mu.Lock()
		ch := s.pending[f.Correlation]
		s.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	case KindSideChannelSend, KindBroadcastEvent, KindReleaseHandle:
		// Accepted; the fake has no CDS to act on (OnFrame sees them).
	case KindError:
		e, _ := ParseError(f.Payload)
		return fmt.Errorf("dylib: iosmux reported %s: %s", e.Code, e.Msg)
	default:
		return &ProtocolError{Code: "kind", Msg: fmt.Sprintf("%v is not sent by iosmux", f.Kind)}
	}
	return nil
}
