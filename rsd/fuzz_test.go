package rsd

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/iosmux/iosmux/xpc"
)

func FuzzParseHandshake(f *testing.F) {
	f.Add(vectorBytes(f, "10_rsd_handshake_device.hex"))
	f.Add(vectorBytes(f, "11_rsd_handshake_host.hex"))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := xpc.Decode(in)
		if err != nil {
			return
		}
		h, err := ParseHandshake(m.Body)
		if err != nil {
			return
		}
		// A parsed Handshake re-encodes and parses to the same services.
		m2 := xpc.Message{Flags: xpc.FlagsMsg, Body: h.Body()}
		b, err := m2.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		back, err := xpc.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := ParseHandshake(back.Body)
		if err != nil || len(h2.Services) != len(h.Services) {
			t.Fatalf("reparse: %v, %d vs %d services", err, len(h2.Services), len(h.Services))
		}
	})
}

// readConn is a net.Conn that reads from a byte slice.
type readConn struct {
	net.Conn
	r *bytes.Reader
}

func (c readConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c readConn) SetDeadline(time.Time) error        { return nil }
func (c readConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c readConn) Close() error                       { return nil }
func (c readConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c readConn) SetReadDeadline(time.Time) error    { return nil }
func (c readConn) SetWriteDeadline(t time.Time) error { return nil }

func FuzzShimReceive(f *testing.F) {
	for _, p := range []string{
		"<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>Request</key><string>RSDCheckin</string></dict></plist>",
		"bplist00\xd1\x01\x02WRequestZRSDCheckin\x08\x0b\x13\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1e",
	} {
		f.Add(append([]byte{0, 0, byte(len(p) >> 8), byte(len(p))}, p...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &ShimConn{nc: readConn{r: bytes.NewReader(in)}, MaxSize: 1 << 16}
		var v map[string]any
		_ = c.Receive(context.Background(), &v)
	})
}
