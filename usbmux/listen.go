package usbmux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
)

// EventKind says what an Event reports.
type EventKind int

// Event kinds. Attached, Detached and Paired come from usbmuxd; Connected
// and Disconnected are reported by a Watcher about usbmuxd itself.
const (
	Attached     EventKind = iota + 1 // a device appeared; Device is set
	Detached                          // device DeviceID went away
	Paired                            // a pair record was saved for DeviceID
	Connected                         // Listen (re)established; Attached events for every present device follow
	Disconnected                      // usbmuxd is unreachable or dropped the stream; Err says why
)

func (k EventKind) String() string {
	switch k {
	case Attached:
		return "Attached"
	case Detached:
		return "Detached"
	case Paired:
		return "Paired"
	case Connected:
		return "Connected"
	case Disconnected:
		return "Disconnected"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one item of a Listen stream.
type Event struct {
	Kind     EventKind
	DeviceID uint32
	Device   DeviceEntry // Attached only
	Err      error       // Disconnected only
}

// event decodes a Listen event.
func (r *reply) event() (Event, error) {
	switch r.MessageType {
	case "Attached":
		d, err := r.device()
		if err != nil {
			return Event{}, err
		}
		return Event{Kind: Attached, DeviceID: d.DeviceID, Device: d}, nil
	case "Detached":
		return Event{Kind: Detached, DeviceID: r.DeviceID}, nil
	case "Paired":
		return Event{Kind: Paired, DeviceID: r.DeviceID}, nil
	}
	return Event{}, fmt.Errorf("%w: unexpected %q message on a Listen stream", ErrMalformed, r.MessageType)
}

// Listener is one Listen stream: a usbmuxd socket that carries only events.
// Next may be called by one goroutine at a time; Close may be called
// concurrently with Next and makes it return.
type Listener struct {
	conn    net.Conn
	timeout time.Duration
	once    sync.Once
	err     error // first read error; the stream cannot resync after it
}

// Listen opens an event stream. usbmuxd first answers Result 0 and then
// reports every present device as Attached, so a fresh Listener needs no
// ListDevices.
func (c *Client) Listen(ctx context.Context) (*Listener, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	rep, err := c.roundTrip(ctx, conn, c.newRequest("Listen"))
	if err == nil {
		err = expectOK(rep, "Listen")
	}
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Listener{conn: conn, timeout: c.cfg.Timeout}, nil
}

// Next blocks until the next event, ctx's end, an error or Close. Events
// may be far apart, so only ctx bounds the wait for a header; once a header
// has arrived its payload must follow within the client's timeout. After
// an error the Listener is dead and Next keeps returning that error.
func (l *Listener) Next(ctx context.Context) (Event, error) {
	if l.err != nil {
		return Event{}, l.err
	}
	ev, err := l.next(ctx)
	if err != nil {
		l.err = err
		l.Close()
	}
	return ev, err
}

func (l *Listener) next(ctx context.Context) (Event, error) {
	stop := deadline.Interrupt(ctx, l.conn.SetReadDeadline)
	defer stop()
	for {
		rep, err := l.read(ctx)
		if err != nil {
			return Event{}, err
		}
		switch rep.MessageType {
		case "Attached", "Detached", "Paired":
		default:
			// A message kind this code does not know: skip it rather than
			// drop a stream that may carry later events we do know.
			continue
		}
		ev, err := rep.event()
		if err != nil {
			return Event{}, fmt.Errorf("usbmux: listen: %w", err)
		}
		return ev, nil
	}
}

// setReadDeadline sets the deadline and then checks ctx: the cancel hook
// poisons the deadline only after ctx is done, so a hook that fired before
// this call is caught here and one that fires after it wins.
func (l *Listener) setReadDeadline(ctx context.Context, t time.Time) error {
	if err := l.conn.SetReadDeadline(t); err != nil {
		return fmt.Errorf("usbmux: listen: %w", err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("usbmux: listen: %w", context.Cause(ctx))
	}
	return nil
}

func (l *Listener) read(ctx context.Context) (*reply, error) {
	if err := l.setReadDeadline(ctx, time.Time{}); err != nil {
		return nil, err
	}
	var hb [HeaderLen]byte
	if _, err := io.ReadFull(l.conn, hb[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("usbmux: listen: usbmuxd closed the stream: %w", err)
		}
		return nil, fmt.Errorf("usbmux: listen: %w", contextError(ctx, err))
	}
	h, err := ParseHeader(hb[:], MaxMessageLen)
	if err == nil {
		err = checkPlistHeader(h)
	}
	if err != nil {
		return nil, fmt.Errorf("usbmux: listen: %w", err)
	}
	if err := l.setReadDeadline(ctx, time.Now().Add(l.timeout)); err != nil {
		return nil, err
	}
	payload := make([]byte, h.PayloadLen())
	if _, err := io.ReadFull(l.conn, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("usbmux: listen: read %d-byte event: %w", len(payload), err)
	}
	rep, err := parseReply(payload)
	if err != nil {
		return nil, fmt.Errorf("usbmux: listen: %w", err)
	}
	return rep, nil
}

// Close closes the stream. It is idempotent.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() { err = l.conn.Close() })
	return err
}
