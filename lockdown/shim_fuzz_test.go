package lockdown

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

// shimReadConn is a net.Conn that reads from a byte slice.
type shimReadConn struct {
	net.Conn
	r *bytes.Reader
}

func (c shimReadConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c shimReadConn) SetDeadline(time.Time) error        { return nil }
func (c shimReadConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c shimReadConn) Close() error                       { return nil }
func (c shimReadConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c shimReadConn) SetReadDeadline(time.Time) error    { return nil }
func (c shimReadConn) SetWriteDeadline(t time.Time) error { return nil }

func FuzzShimReceive(f *testing.F) {
	for _, p := range []string{
		"<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>Request</key><string>RSDCheckin</string></dict></plist>",
		"bplist00\xd1\x01\x02WRequestZRSDCheckin\x08\x0b\x13\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1e",
	} {
		f.Add(append([]byte{0, 0, byte(len(p) >> 8), byte(len(p))}, p...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := NewPlistConn(shimReadConn{r: bytes.NewReader(in)}, 1<<16)
		var v map[string]any
		_ = c.Receive(context.Background(), &v)
	})
}
