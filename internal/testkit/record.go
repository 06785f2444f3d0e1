package testkit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// maxRecord bounds one RecordConn record.
const maxRecord = 1 << 20

// RecordConn wraps a stream conn (usually loopback TCP) so that it keeps
// write boundaries the way a TLS record layer does: every Write travels as one
// record (a 4-byte big-endian length, then the bytes), and a Read returns
// bytes of one record only, the whole record when b is large enough. It
// stands in for TLS where a test needs a real socket but no cryptography.
// Both ends of the socket must be wrapped. As with TLS, a Write cut short by
// a deadline leaves the stream unusable.
func RecordConn(c net.Conn) net.Conn {
	return &recordConn{Conn: c, br: bufio.NewReaderSize(c, 256<<10)}
}

type recordConn struct {
	net.Conn
	rmu  sync.Mutex
	br   *bufio.Reader
	left int // unread bytes of the current record

	wmu  sync.Mutex
	wbuf []byte
}

func (c *recordConn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for c.left == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, fmt.Errorf("testkit: record header cut short: %w", err)
			}
			return 0, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxRecord {
			return 0, fmt.Errorf("testkit: record of %d bytes exceeds %d", n, maxRecord)
		}
		c.left = int(n)
	}
	if len(b) > c.left {
		b = b[:c.left]
	}
	n, err := io.ReadFull(c.br, b)
	c.left -= n
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *recordConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	written := 0
	for len(b) > 0 || written == 0 {
		chunk := b
		if len(chunk) > maxRecord {
			chunk = chunk[:maxRecord]
		}
		if len(chunk) == 0 {
			return 0, nil
		}
		c.wbuf = binary.BigEndian.AppendUint32(c.wbuf[:0], uint32(len(chunk)))
		c.wbuf = append(c.wbuf, chunk...)
		if _, err := c.Conn.Write(c.wbuf); err != nil {
			return written, err
		}
		written += len(chunk)
		b = b[len(chunk):]
	}
	return written, nil
}

// CloseWrite half-closes the underlying conn when it supports that.
func (c *recordConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("testkit: underlying conn has no CloseWrite")
}
