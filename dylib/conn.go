package dylib

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Conn reads and writes frames on a stream. Reads are for one goroutine;
// WriteFrame may be called concurrently (each frame is one Write).
type Conn struct {
	nc  net.Conn
	wmu sync.Mutex
	hdr [4]byte
}

// NewConn wraps nc.
func NewConn(nc net.Conn) *Conn { return &Conn{nc: nc} }

// WriteFrame writes f in one Write, bounded by timeout (0: none).
func (c *Conn) WriteFrame(f Frame, timeout time.Duration) error {
	b, err := f.AppendBinary(nil)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if timeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		defer c.nc.SetWriteDeadline(time.Time{})
	}
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("dylib: writing %v: %w", f.Kind, err)
	}
	return nil
}

// ReadFrame reads one frame. The length is checked against MaxFrame before
// the body is allocated. A ProtocolError (with the frame as far as it was
// parsed) means the peer broke the protocol: answer ERROR and close.
func (c *Conn) ReadFrame() (Frame, error) {
	if _, err := io.ReadFull(c.nc, c.hdr[:]); err != nil {
		return Frame{}, err
	}
	n, err := FrameLen(c.hdr[:])
	if err != nil {
		return Frame{}, err
	}
	b := make([]byte, n)
	copy(b, c.hdr[:])
	if _, err := io.ReadFull(c.nc, b[4:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return ParseFrame(b)
}

// Fail reports err to the peer as ERROR when it is a ProtocolError, then
// closes the connection.
func (c *Conn) Fail(err error) {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		c.WriteFrame(Frame{Kind: KindError, Payload: Error{Code: pe.Code, Msg: pe.Msg}.Value()}, time.Second)
	}
	c.nc.Close()
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// SetReadDeadline bounds the next reads.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }
