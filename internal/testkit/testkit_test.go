package testkit

import (
	"bytes"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

func TestPipeConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		c1, c2 = Pipe()
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}

func TestPipeKeepsWriteBoundaries(t *testing.T) {
	a, b := PipeSize(64)
	defer a.Close()
	defer b.Close()
	// Both ends write first: the buffer must absorb it.
	for _, c := range []net.Conn{a, b} {
		if _, err := c.Write([]byte("one")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("second")); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 100)
	for _, want := range []string{"one", "second"} {
		n, err := b.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("Read = %q, %v; want %q", buf[:n], err, want)
		}
	}
}

func TestPipeHalfClose(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	a.Write([]byte("bye"))
	if err := a.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want bye, nil", got, err)
	}
	// The other direction still works.
	b.Write([]byte("back"))
	buf := make([]byte, 10)
	n, err := a.Read(buf)
	if err != nil || string(buf[:n]) != "back" {
		t.Fatalf("Read = %q, %v; want back", buf[:n], err)
	}
}

func TestPipeLargeWrite(t *testing.T) {
	a, b := PipeSize(16)
	defer a.Close()
	defer b.Close()
	msg := bytes.Repeat([]byte("x"), 100)
	go a.Write(msg)
	got := make([]byte, 100)
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("ReadFull = %v; want 100 x", err)
	}
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c1, c2
}

func TestRecordConn(t *testing.T) {
	c1, c2 := tcpPair(t)
	a, b := RecordConn(c1), RecordConn(c2)
	defer a.Close()
	defer b.Close()
	sizes := []int{1, 40, 1500, 16000, 70000}
	go func() {
		for _, n := range sizes {
			a.Write(bytes.Repeat([]byte{byte(n)}, n))
		}
	}()
	buf := make([]byte, 1<<17)
	for _, n := range sizes {
		// Give the sender time to queue several records: reads still must
		// not join them.
		time.Sleep(time.Millisecond)
		got, err := b.Read(buf)
		if err != nil || got != n {
			t.Fatalf("Read = %d, %v; want %d (one record)", got, err, n)
		}
		if buf[0] != byte(n) || buf[got-1] != byte(n) {
			t.Fatalf("record %d has wrong content", n)
		}
	}
	// A small buffer reads one record in pieces.
	go a.Write([]byte("abcdef"))
	small := make([]byte, 4)
	n, _ := b.Read(small)
	n2, _ := b.Read(small[n:])
	if string(small[:n]) != "abcd" || n2 != 0 && n2 > 2 {
		t.Fatalf("split read = %q then %d bytes", small[:n], n2)
	}
}

func TestRandDeterministic(t *testing.T) {
	a := make([]byte, 64)
	b := make([]byte, 64)
	io.ReadFull(Rand(7), a)
	io.ReadFull(Rand(7), b)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different bytes")
	}
	io.ReadFull(Rand(8), b)
	if bytes.Equal(a, b) {
		t.Fatal("different seeds gave the same bytes")
	}
}

// recorder is a testing.TB whose failures and cleanups are captured.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, format)
}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestCheckLeaksCatchesGoroutine(t *testing.T) {
	old := LeakGrace
	LeakGrace = 100 * time.Millisecond
	defer func() { LeakGrace = old }()
	r := &recorder{TB: t}
	CheckLeaks(r)
	stop := make(chan struct{})
	go func() { <-stop }()
	r.runCleanups()
	close(stop)
	if len(r.errs) == 0 {
		t.Fatal("a goroutine left running was not reported")
	}
}

func TestCheckLeaksCatchesFD(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd on this platform") // not a missing dependency: the check is Linux-only by design
	}
	old := LeakGrace
	LeakGrace = 100 * time.Millisecond
	defer func() { LeakGrace = old }()
	r := &recorder{TB: t}
	CheckLeaks(r)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	r.runCleanups()
	f.Close()
	if len(r.errs) == 0 || !strings.Contains(strings.Join(r.errs, " "), "descriptor") {
		t.Fatalf("an open file was not reported: %v", r.errs)
	}
}

func TestCheckLeaksQuietWhenClean(t *testing.T) {
	r := &recorder{TB: t}
	CheckLeaks(r)
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	c1, c2 := Pipe()
	c1.Close()
	c2.Close()
	r.runCleanups()
	if len(r.errs) != 0 {
		t.Fatalf("clean test reported leaks: %v", r.errs)
	}
}

func TestBulk(t *testing.T) {
	CheckLeaks(t)
	a, b := Pipe()
	errc := make(chan error, 1)
	go func() { errc <- ServeBulk(b) }()
	res, err := Bulk(a, 3<<20+7, 5<<20+3)
	a.Close()
	if err != nil || res.Up != 3<<20+7 || res.Down != 5<<20+3 {
		t.Fatalf("Bulk = %+v, %v", res, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// flipConn corrupts one byte of what it reads after skip bytes.
type flipConn struct {
	net.Conn
	skip int
}

func (c *flipConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.skip >= 0 && c.skip < n {
		b[c.skip] ^= 1
	}
	c.skip -= n
	return n, err
}

func TestBulkDetectsCorruption(t *testing.T) {
	for _, side := range []string{"upload", "download"} {
		t.Run(side, func(t *testing.T) {
			a, b := Pipe()
			defer a.Close()
			if side == "upload" {
				b = &flipConn{Conn: b, skip: 1000}
			} else {
				a = &flipConn{Conn: a, skip: 1000}
			}
			go ServeBulk(b)
			if _, err := Bulk(a, 1<<20, 1<<20); err == nil || !strings.Contains(err.Error(), side) {
				t.Fatalf("err = %v, want %s corruption", err, side)
			}
		})
	}
}
