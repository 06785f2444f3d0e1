package tlspsk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"testing"
	"testing/iotest"
	"time"
)

// oneByteConn delivers reads one byte at a time (iotest.OneByteReader).
type oneByteConn struct{ net.Conn }

func (c oneByteConn) Read(p []byte) (int, error) { return iotest.OneByteReader(c.Conn).Read(p) }

// halfConnReader delivers reads half at a time (iotest.HalfReader).
type halfReadConn struct{ net.Conn }

func (c halfReadConn) Read(p []byte) (int, error) { return iotest.HalfReader(c.Conn).Read(p) }

// TestFragmentation sends every handshake message in records of a few bytes
// and reads through byte-at-a-time conns, so messages span records, records
// span reads, and several messages share a record (the server flight).
func TestFragmentation(t *testing.T) {
	for _, frag := range []int{1, 2, 3, 7, 100} {
		for _, id := range []uint16{TLS_PSK_WITH_AES_256_GCM_SHA384, TLS_PSK_WITH_AES_128_CBC_SHA} {
			t.Run(fmt.Sprintf("%s/frag=%d", CipherSuiteName(id), frag), func(t *testing.T) {
				a, b := tcpPipe(t)
				ccfg, scfg := clientConfig(), serverConfig()
				ccfg.CipherSuites = []uint16{id}
				ccfg.ExtendedMasterSecret = true
				scfg.IdentityHint = "a hint long enough to be split"
				c, s := Client(oneByteConn{a}, ccfg), Server(halfReadConn{b}, scfg)
				c.maxFragment, s.maxFragment = frag, frag
				if cerr, serr := handshakePair(t, c, s); cerr != nil || serr != nil {
					t.Fatalf("handshake: %v, %v", cerr, serr)
				}
				exchange(t, c, s, maxPlaintext+5)
			})
		}
	}
}

func TestCloseIdempotent(t *testing.T) {
	a, b := tcpPipe(t)
	w := &onWire{Conn: a}
	c, s := Client(w, clientConfig()), Server(b, serverConfig())
	if cerr, serr := handshakePair(t, c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	before := len(w.bytes())
	done := make(chan error, 3)
	for range 3 {
		go func() { done <- c.Close() }()
	}
	for range 3 {
		if err := <-done; err != nil {
			t.Errorf("close: %v", err)
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("fourth close: %v", err)
	}
	// Exactly one record (the close_notify) went out after the handshake.
	after := w.bytes()[before:]
	typ, payload, err := readRecordRaw(bytes.NewReader(after))
	if err != nil || typ != recordTypeAlert || len(after) != recordHeaderLen+len(payload) {
		t.Fatalf("after Close the wire has % x", after)
	}
	if err := readErr(s); err.Error() != "EOF" {
		t.Errorf("peer read %v, want EOF", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestCloseWrite(t *testing.T) {
	c, s := newPair(t, tcpPipe, clientConfig(), serverConfig())
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, errShutdown) {
		t.Errorf("write after CloseWrite: %v", err)
	}
	if err := readErr(s); err.Error() != "EOF" {
		t.Errorf("peer read %v, want EOF", err)
	}
	// The other direction still works.
	if _, err := s.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "still here" {
		t.Errorf("read %q, %v", buf[:n], err)
	}
}

// TestHandshakeContextCancel: a server that never answers; cancelling the
// context ends the handshake with the context's error and leaves no
// goroutine behind.
func TestHandshakeContextCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	a, _ := tcpPipe(t)
	c := Client(a, clientConfig())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.HandshakeContext(ctx) }()
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if err2 := c.Handshake(); err2 != err {
		t.Errorf("handshake error does not stick: %v", err2)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines before, %d after", before, n)
	}
}

// TestDeadlineDuringHandshake: the conn's own deadline bounds the handshake
// too, and the failure sticks.
func TestDeadlineDuringHandshake(t *testing.T) {
	a, _ := tcpPipe(t)
	c := Client(a, clientConfig())
	c.SetDeadline(time.Now().Add(10 * time.Millisecond))
	err := c.Handshake()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a timeout", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) {
		t.Errorf("read after failed handshake: %v", err)
	}
}

// TestWriteTimeoutKeepsStream: a write timeout in the middle of a large
// Write leaves a consistent stream; what Write reported written arrives,
// followed by later writes.
func TestWriteTimeoutKeepsStream(t *testing.T) {
	c, s := newPair(t, tcpPipe, clientConfig(), serverConfig())
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB, more than the socket buffers
	c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	n, err := c.Write(big)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write: %d, %v; want a timeout", n, err)
	}
	c.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("tail"))
		done <- err
	}()
	want := append(bytes.Clone(big[:n]), "tail"...)
	got := make([]byte, len(want))
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := readFull(s, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("stream differs after a write timeout")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// budgetConn writes at most budget bytes, then fails with a timeout, like a
// conn whose write deadline passes mid-write.
type budgetConn struct {
	net.Conn
	budget int // < 0: unlimited
}

type fakeTimeout struct{}

func (fakeTimeout) Error() string   { return "i/o timeout (fake)" }
func (fakeTimeout) Timeout() bool   { return true }
func (fakeTimeout) Temporary() bool { return true }

func (b *budgetConn) Write(p []byte) (int, error) {
	if b.budget < 0 || len(p) <= b.budget {
		if b.budget >= 0 {
			b.budget -= len(p)
		}
		return b.Conn.Write(p)
	}
	n, err := b.Conn.Write(p[:b.budget])
	b.budget = 0
	if err != nil {
		return n, err
	}
	return n, fakeTimeout{}
}

// TestPartialWrites cuts a multi-record Write at chosen byte offsets: the
// count reported, the sequence numbers and the bytes that arrive must
// agree whatever the cut.
func TestPartialWrites(t *testing.T) {
	rec := recordHeaderLen + explicitNonceLen + maxPlaintext + 16 // one full GCM record
	for _, cut := range []int{0, 1, rec - 1, rec, rec + 1, 2*rec + 100, 4*rec - 1, 4 * rec, 5*rec + 3} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			a, b := tcpPipe(t)
			bc := &budgetConn{Conn: a, budget: -1}
			ccfg := clientConfig()
			ccfg.CipherSuites = []uint16{TLS_PSK_WITH_AES_256_GCM_SHA384}
			c, s := Client(bc, ccfg), Server(b, serverConfig())
			if cerr, serr := handshakePair(t, c, s); cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			big := make([]byte, 6*maxPlaintext+5)
			detRand(7).Read(big)
			bc.budget = cut
			n, err := c.Write(big)
			if !isTimeout(err) {
				t.Fatalf("write: %d, %v", n, err)
			}
			// Every record of which a byte went out counts in full.
			wantN := min(len(big), (cut+rec-1)/rec*maxPlaintext)
			if n != wantN {
				t.Fatalf("wrote %d, want %d", n, wantN)
			}
			bc.budget = -1
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(big[n:])
				errc <- err
			}()
			got := make([]byte, len(big))
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := readFull(s, got); err != nil || !bytes.Equal(got, big) {
				t.Fatalf("read: %v, equal %v", err, bytes.Equal(got, big))
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}
