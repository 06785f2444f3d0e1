package sim

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"

	"github.com/iosmux/iosmux/internal/pace"
)

// Every connection a simulated device accepts, on any surface, is wrapped
// in a simConn: the device can then close all of them (unplug, reboot),
// hold them (stall), cut them (reset), corrupt what it sends (garbage) and
// pace them to a link rate. The wrapper is the only place faults touch the
// byte streams, so protocol code stays unaware of them.

// surface says which link a connection came over; unplugging the cable
// ends the USB ones and leaves Wi-Fi ones alone.
type surface uint8

const (
	surfaceUSB    surface = 1 << iota // usbmuxd, USB-NCM
	surfaceNet                        // Wi-Fi RemotePairing
	surfaceTunnel                     // inside a tunnel's netstack
)

func (s surface) String() string {
	switch s {
	case surfaceUSB:
		return "usb"
	case surfaceNet:
		return "network"
	case surfaceTunnel:
		return "tunnel"
	}
	return "unknown"
}

// faultGate is the device-wide switchboard read by every simConn.
type faultGate struct {
	mu      sync.Mutex
	stall   chan struct{} // non-nil while stalled; closed when released
	garbage bool
}

// wait blocks while the device is stalled, until released or done closes.
func (g *faultGate) wait(done <-chan struct{}) bool {
	for {
		g.mu.Lock()
		ch := g.stall
		g.mu.Unlock()
		if ch == nil {
			return true
		}
		select {
		case <-ch:
		case <-done:
			return false
		}
	}
}

func (g *faultGate) setStall(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case on && g.stall == nil:
		g.stall = make(chan struct{})
	case !on && g.stall != nil:
		close(g.stall)
		g.stall = nil
	}
}

func (g *faultGate) stalled() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stall != nil
}

func (g *faultGate) setGarbage(on bool) {
	g.mu.Lock()
	g.garbage = on
	g.mu.Unlock()
}

func (g *faultGate) garbling() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.garbage
}

// connSet tracks the live connections of one boot.
type connSet struct {
	mu     sync.Mutex
	conns  map[*simConn]struct{}
	closed bool
}

func newConnSet() *connSet { return &connSet{conns: map[*simConn]struct{}{}} }

// add registers c; false when the set is already closed (the boot ended).
func (s *connSet) add(c *simConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) remove(c *simConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// each calls f on every live connection whose surface is in mask.
func (s *connSet) each(mask surface, f func(*simConn)) {
	s.mu.Lock()
	list := make([]*simConn, 0, len(s.conns))
	for c := range s.conns {
		if c.surf&mask != 0 {
			list = append(list, c)
		}
	}
	s.mu.Unlock()
	for _, c := range list {
		f(c)
	}
}

// closeAll closes every connection and refuses new ones.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.each(^surface(0), func(c *simConn) { c.reset() })
}

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// simConn is one tracked, fault-aware device connection.
type simConn struct {
	net.Conn
	surf surface
	gate *faultGate
	link *link // nil: unpaced
	set  *connSet

	// resetAfter counts down the bytes (both directions) the connection
	// may still carry before the device resets it; negative disables.
	resetAfter atomic.Int64

	done      chan struct{}
	closeOnce sync.Once
}

func (s *connSet) wrap(nc net.Conn, surf surface, gate *faultGate, l *link) (*simConn, bool) {
	c := &simConn{Conn: nc, surf: surf, gate: gate, link: l, set: s, done: make(chan struct{})}
	c.resetAfter.Store(-1)
	if !s.add(c) {
		nc.Close()
		return nil, false
	}
	return c, true
}

func (c *simConn) Read(p []byte) (int, error) {
	if !c.gate.wait(c.done) {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if c.link != nil && !c.link.up.Take(n, c.done) {
			return 0, net.ErrClosed
		}
		// Data that arrived just before a stall is held, as a wedged
		// device holds what is in its buffers.
		if !c.gate.wait(c.done) {
			return 0, net.ErrClosed
		}
		if !c.count(n) {
			return 0, net.ErrClosed
		}
	}
	return n, err
}

func (c *simConn) Write(p []byte) (int, error) {
	if !c.gate.wait(c.done) {
		return 0, net.ErrClosed
	}
	if c.gate.garbling() {
		g := make([]byte, len(p))
		for i := range g {
			g[i] = byte(rand.Uint32())
		}
		p = g
	}
	// A pending reset cuts the stream inside this write.
	if left := c.resetAfter.Load(); left >= 0 && int64(len(p)) > left {
		n, _ := c.write(p[:left])
		c.reset()
		return n, net.ErrClosed
	}
	n, err := c.write(p)
	c.count(n)
	return n, err
}

func (c *simConn) write(p []byte) (int, error) {
	if c.link != nil && !c.link.down.Take(len(p), c.done) {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// count charges n bytes against a pending reset; false when it fired.
func (c *simConn) count(n int) bool {
	for {
		left := c.resetAfter.Load()
		if left < 0 {
			return true
		}
		if int64(n) >= left {
			c.reset()
			return false
		}
		if c.resetAfter.CompareAndSwap(left, left-int64(n)) {
			return true
		}
	}
}

// armReset makes the connection reset after n more bytes (0: now).
func (c *simConn) armReset(n int64) {
	if n <= 0 {
		c.reset()
		return
	}
	c.resetAfter.Store(n)
}

// reset drops the connection the hard way: a TCP RST where there is TCP
// (SO_LINGER 0), a plain close elsewhere.
func (c *simConn) reset() {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (c *simConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		err = c.Conn.Close()
		c.set.remove(c)
	})
	return err
}

// link paces a device's USB connections to a shared rate, one bucket per
// direction, as the bus is shared by everything on the cable.
type link struct {
	up, down *pace.Bucket
}

func newLink(rate int64) *link {
	if rate <= 0 {
		return nil
	}
	return &link{up: linkBucket(rate), down: linkBucket(rate)}
}

// linkBucket paces one direction of a link: a token bucket of bytes with
// 50 ms of burst, fine-grained enough that a 40 MB/s link looks like one to
// TCP.
func linkBucket(rate int64) *pace.Bucket {
	return pace.New(rate, max(float64(rate)/20, 64<<10))
}
