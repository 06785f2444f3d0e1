package utun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// tcpPair is two ends of one loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ac := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ac <- accepted{c, err}
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ac
	if a.err != nil {
		d.Close()
		t.Fatal(a.err)
	}
	t.Cleanup(func() { d.Close(); a.c.Close() })
	return d.(*net.TCPConn), a.c.(*net.TCPConn)
}

// hiddenConn hides *net.TCPConn's type (and so ReadFrom/WriteTo) but keeps
// its half-close, like a conn from another stack.
type hiddenConn struct{ net.Conn }

func (h hiddenConn) CloseWrite() error { return h.Conn.(*net.TCPConn).CloseWrite() }

// TestRelay runs client ↔ Relay(a, b) ↔ server over loopback TCP, once with
// both relay ends as *net.TCPConn (the kernel copies) and once hidden (the
// buffered copy). Both directions carry data at the same time; the client
// then half-closes, and the server answers only after its EOF, so the test
// needs the half-close passed on and the way back kept open. Every byte is
// checked by SHA-256 at the far end.
func TestRelay(t *testing.T) {
	const up, down = 12<<20 + 7, 9<<20 + 3
	for _, tc := range []struct {
		name   string
		wrap   func(*net.TCPConn) net.Conn
		kernel bool
	}{
		{"TCPConn", func(c *net.TCPConn) net.Conn { return c }, true},
		{"hidden", func(c *net.TCPConn) net.Conn { return hiddenConn{c} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testkit.CheckLeaks(t)
			client, a := tcpPair(t)
			b, server := tcpPair(t)
			ra, rb := tc.wrap(a), tc.wrap(b)
			if _, _, ok := kernelPair(ra, rb); ok != tc.kernel {
				t.Fatalf("kernelPair = %v, want %v", ok, tc.kernel)
			}
			deadline := time.Now().Add(time.Minute)
			client.SetDeadline(deadline)
			server.SetDeadline(deadline)
			relayErr := make(chan error, 1)
			go func() { relayErr <- Relay(ra, rb) }()

			// Server: sends down bytes while reading the upload to EOF,
			// then sends the upload's hash and closes.
			srvErr := make(chan error, 1)
			go func() {
				defer server.Close()
				sent := make(chan error, 1)
				go func() {
					_, err := io.Copy(server, io.LimitReader(testkit.Rand(2), down))
					sent <- err
				}()
				h := sha256.New()
				n, rerr := io.Copy(h, server)
				if err := <-sent; err != nil {
					srvErr <- err
					return
				}
				if rerr != nil || n != up {
					srvErr <- errors.Join(rerr, errors.New("server got a short upload"))
					return
				}
				_, err := server.Write(h.Sum(nil))
				srvErr <- err
			}()

			// Client: uploads while downloading; half-closes after the
			// upload and reads to EOF (the download, then the hash).
			sent := make(chan error, 1)
			go func() {
				_, err := io.Copy(client, io.LimitReader(testkit.Rand(1), up))
				if err == nil {
					err = client.CloseWrite()
				}
				sent <- err
			}()
			got, rerr := io.ReadAll(client)
			if err := <-sent; err != nil {
				t.Fatalf("client upload: %v", err)
			}
			if rerr != nil {
				t.Fatalf("client read: %v", rerr)
			}
			if err := <-srvErr; err != nil {
				t.Fatalf("server: %v", err)
			}
			if err := <-relayErr; err != nil {
				t.Fatalf("Relay = %v, want nil after two clean EOFs", err)
			}
			if len(got) != down+sha256.Size {
				t.Fatalf("client got %d bytes, want %d", len(got), down+sha256.Size)
			}
			wantDown := sha256.New()
			io.Copy(wantDown, io.LimitReader(testkit.Rand(2), down))
			if gotDown := sha256.Sum256(got[:down]); !bytes.Equal(gotDown[:], wantDown.Sum(nil)) {
				t.Fatal("download arrived corrupted")
			}
			wantUp := sha256.New()
			io.Copy(wantUp, io.LimitReader(testkit.Rand(1), up))
			if !bytes.Equal(got[down:], wantUp.Sum(nil)) {
				t.Fatal("upload arrived corrupted (server's hash differs)")
			}
			// Relay closed both of its conns.
			if _, err := a.Write([]byte{0}); err == nil {
				t.Fatal("relay end a still open after Relay returned")
			}
		})
	}
}

// TestOpenForwarder: each accepted connection is relayed to what open
// returns for it (here an in-memory echo), and dropped when open fails.
func TestOpenForwarder(t *testing.T) {
	testkit.CheckLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	var opened atomic.Int32
	f := NewOpenForwarder(ln, func(ctx context.Context) (net.Conn, error) {
		if fail.Load() {
			return nil, errors.New("no device")
		}
		opened.Add(1)
		a, b := testkit.Pipe()
		go func() { io.Copy(b, b); b.Close() }()
		return a, nil
	}, nil)
	defer f.Close()
	c, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the forwarder: %q %v", buf, err)
	}
	c.Close()
	fail.Store(true)
	c, err = net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(buf); err == nil {
		t.Errorf("read %d bytes from a connection whose open failed", n)
	}
	c.Close()
	if opened.Load() != 1 {
		t.Errorf("opened %d", opened.Load())
	}
}
