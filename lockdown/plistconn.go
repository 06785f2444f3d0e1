package lockdown

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/iosmux/iosmux/internal/deadline"
)

// PlistConn carries the lockdown-framed plists of a service connection:
// what the mounter, amfi, installation_proxy and the other plist services
// speak once StartService (and its TLS) or an RSD shim's RSDCheckin has
// handed the connection over (services.md §1.1). Both roles use
// it: a host sends requests and reads replies, a device the reverse.
//
// Every call takes a context: its deadline becomes the connection's, and
// cancelling it interrupts a call in flight. A call without a deadline
// waits as long as the peer does (a device idling between requests). One
// Send and one Receive may run at the same time; two of the same kind may
// not. After an I/O error the stream cannot resync: callers close it.
type PlistConn struct {
	nc  net.Conn
	max int
}

// NewPlistConn wraps nc; maxFrame bounds one received message (0 means
// MaxFrameLen).
func NewPlistConn(nc net.Conn, maxFrame int) *PlistConn {
	if maxFrame <= 0 {
		maxFrame = MaxFrameLen
	}
	return &PlistConn{nc: nc, max: maxFrame}
}

// Conn is the underlying connection, for services that switch to raw bytes
// (the mounter's image upload).
func (c *PlistConn) Conn() net.Conn { return c.nc }

// Close closes the connection.
func (c *PlistConn) Close() error { return c.nc.Close() }

// Send writes v as one XML plist frame (what every reference sends) in a
// single Write.
func (c *PlistConn) Send(ctx context.Context, v any) error {
	frame, err := encodeFrame(v)
	if err != nil {
		return err
	}
	return deadline.Do(ctx, c.nc, func() error {
		_, err := c.nc.Write(frame)
		return err
	})
}

// SendAll writes several messages, each an XML plist frame, in a single
// Write: a peer that switches to raw bytes after reading the first (appium's
// syslog text mode after RSDCheckin) then finds the rest already read with
// it rather than in its raw stream.
func (c *PlistConn) SendAll(ctx context.Context, vs ...any) error {
	var out []byte
	for _, v := range vs {
		frame, err := encodeFrame(v)
		if err != nil {
			return err
		}
		out = append(out, frame...)
	}
	return deadline.Do(ctx, c.nc, func() error {
		_, err := c.nc.Write(out)
		return err
	})
}

// Receive reads one frame and decodes its plist (XML or binary) into v.
// io.EOF means the peer closed the connection between messages.
func (c *PlistConn) Receive(ctx context.Context, v any) error {
	var payload []byte
	err := deadline.Do(ctx, c.nc, func() error {
		var err error
		payload, err = readFrame(c.nc, c.max)
		return err
	})
	if err != nil {
		return err
	}
	return decodePlist(payload, v)
}

// ReceiveMessage reads one frame that must hold a dictionary.
func (c *PlistConn) ReceiveMessage(ctx context.Context) (Message, error) {
	var m map[string]any
	if err := c.Receive(ctx, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("%w: plist is not a dictionary", ErrMalformed)
	}
	return m, nil
}

// IsClosed reports whether err means the peer or we closed the connection
// (EOF, a reset, a closed socket) rather than a malformed message.
func IsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrClosedPipe) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
