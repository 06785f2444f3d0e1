package testkit

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
)

// Serve accepts on ln and runs f on each connection; the returned func
// closes ln and waits for every f.
func Serve(ln net.Listener, f func(net.Conn)) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f(c) }()
		}
	}()
	return func() { ln.Close(); wg.Wait() }
}

// ServeBulkListener serves the bulk check (ServeBulk) on every connection
// of ln, handing a connection's error to onErr when it is not nil; the
// returned func closes ln and every open connection (a test may leave one
// stuck) and waits for them.
func ServeBulkListener(ln net.Listener, onErr func(error)) (stop func()) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := ServeBulk(c); err != nil && onErr != nil {
					onErr(err)
				}
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// Ports of the benchmark services on a device: Sink reads to EOF then
// answers one byte; Source reads an 8-byte length and sends that many
// bytes.
const (
	SinkPort   = 9
	SourcePort = 19
)

// BenchChunk is the write size of the benchmark services and clients.
const BenchChunk = 1 << 20

// Sink reads c to EOF, answers one byte and closes c.
func Sink(c net.Conn) {
	defer c.Close()
	io.Copy(io.Discard, c)
	c.Write([]byte{1})
}

// Source reads a big-endian 8-byte length, sends that many bytes and
// closes c.
func Source(c net.Conn) {
	defer c.Close()
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	buf := make([]byte, BenchChunk)
	for left := int64(binary.BigEndian.Uint64(hdr[:])); left > 0; left -= BenchChunk {
		if _, err := c.Write(buf[:min(left, BenchChunk)]); err != nil {
			return
		}
	}
}

// TCPLoopback returns both ends of a loopback TCP connection.
func TCPLoopback(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// FreezeConn is a device's transport that a test can silence or kill:
// Freeze makes the device go silent without closing anything, Kill makes it
// vanish with a TCP reset.
type FreezeConn struct {
	net.Conn
	raw      *net.TCPConn
	freezeMu sync.Mutex
	frozen   bool
	thaw     chan struct{}
	once     sync.Once
}

// NewFreezeConn wraps c, whose socket is raw (c itself, or raw under a
// wrapper such as RecordConn).
func NewFreezeConn(c net.Conn, raw *net.TCPConn) *FreezeConn {
	return &FreezeConn{Conn: c, raw: raw, thaw: make(chan struct{})}
}

func (c *FreezeConn) isFrozen() bool {
	c.freezeMu.Lock()
	defer c.freezeMu.Unlock()
	return c.frozen
}

func (c *FreezeConn) Read(b []byte) (int, error) {
	if c.isFrozen() {
		<-c.thaw
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(b)
	if c.isFrozen() {
		<-c.thaw
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *FreezeConn) Write(b []byte) (int, error) {
	if c.isFrozen() {
		<-c.thaw
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (c *FreezeConn) Close() error {
	c.once.Do(func() { close(c.thaw) })
	return c.Conn.Close()
}

// Freeze stops the device's reads and writes; bytes already in flight are
// lost to it.
func (c *FreezeConn) Freeze() {
	c.freezeMu.Lock()
	c.frozen = true
	c.freezeMu.Unlock()
}

// Kill closes the device's socket with a reset, as a crashed process would.
func (c *FreezeConn) Kill() {
	c.raw.SetLinger(0)
	c.Close()
}
