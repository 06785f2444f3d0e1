package testkit

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// DefaultPipeCapacity is the per-direction buffer of Pipe.
const DefaultPipeCapacity = 1 << 20

// Pipe returns two connected in-memory conns with DefaultPipeCapacity bytes
// of buffer in each direction.
func Pipe() (net.Conn, net.Conn) { return PipeSize(DefaultPipeCapacity) }

// PipeSize returns two connected in-memory conns. Unlike net.Pipe each
// direction buffers up to capacity bytes, so both ends may write first
// without deadlocking (x/crypto ssh/handshake_test.go explains why that
// matters); a Write larger than capacity waits for an empty buffer and then
// goes in whole.
//
// Like a TLS record layer, a Read returns bytes of one Write only and never
// joins two writes; a reader that needs more calls Read again. Both conns
// support deadlines and CloseWrite (half-close: the peer reads io.EOF once the
// buffer is drained). Close ends both directions: local calls then fail with
// io.ErrClosedPipe, and the peer's writes fail with io.ErrClosedPipe.
func PipeSize(capacity int) (net.Conn, net.Conn) {
	if capacity <= 0 {
		capacity = DefaultPipeCapacity
	}
	ab := newPipeBuf(capacity)
	ba := newPipeBuf(capacity)
	a := &pipeConn{rd: ba, wr: ab, local: pipeAddr("a"), remote: pipeAddr("b")}
	b := &pipeConn{rd: ab, wr: ba, local: pipeAddr("b"), remote: pipeAddr("a")}
	return a, b
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return "pipe:" + string(a) }

// pipeBuf is one direction: a queue of written chunks bounded by capacity.
type pipeBuf struct {
	mu       sync.Mutex
	chunks   [][]byte
	size     int
	capacity int
	wclosed  bool          // writer half-closed or closed: reader gets EOF when empty
	rclosed  bool          // reader closed: writes fail
	changed  chan struct{} // closed and replaced on every state change
}

func newPipeBuf(capacity int) *pipeBuf {
	return &pipeBuf{capacity: capacity, changed: make(chan struct{})}
}

// signalLocked wakes every waiter; p.mu must be held.
func (p *pipeBuf) signalLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// deadline is one settable deadline; a change wakes waiters.
type deadline struct {
	mu      sync.Mutex
	t       time.Time
	changed chan struct{}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	d.t = t
	if d.changed != nil {
		close(d.changed)
	}
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// get returns the deadline and a channel closed when it changes.
func (d *deadline) get() (time.Time, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.t, d.changed
}

// wait blocks until ch is closed, the deadline passes or it changes. It
// returns os.ErrDeadlineExceeded once the deadline has passed.
func (d *deadline) wait(ch <-chan struct{}) error {
	t, dch := d.get()
	if t.IsZero() {
		select {
		case <-ch:
		case <-dch:
		}
		return nil
	}
	left := time.Until(t)
	if left <= 0 {
		return os.ErrDeadlineExceeded
	}
	timer := time.NewTimer(left)
	defer timer.Stop()
	select {
	case <-ch:
		return nil
	case <-dch:
		return nil
	case <-timer.C:
		return os.ErrDeadlineExceeded
	}
}

func (d *deadline) expired() bool {
	t, _ := d.get()
	return !t.IsZero() && !time.Now().Before(t)
}

type pipeConn struct {
	rd, wr        *pipeBuf
	local, remote net.Addr
	rdl, wdl      deadline
	closeOnce     sync.Once
	closedMu      sync.Mutex
	closed        bool
}

func (c *pipeConn) isClosed() bool {
	c.closedMu.Lock()
	defer c.closedMu.Unlock()
	return c.closed
}

func (c *pipeConn) Read(b []byte) (int, error) {
	p := c.rd
	for {
		if c.isClosed() {
			return 0, io.ErrClosedPipe
		}
		if c.rdl.expired() {
			return 0, os.ErrDeadlineExceeded
		}
		p.mu.Lock()
		if p.rclosed { // closed locally after the check above
			p.mu.Unlock()
			return 0, io.ErrClosedPipe
		}
		if len(p.chunks) > 0 {
			if len(b) == 0 {
				p.mu.Unlock()
				return 0, nil
			}
			n := copy(b, p.chunks[0])
			if n == len(p.chunks[0]) {
				p.chunks[0] = nil
				p.chunks = p.chunks[1:]
			} else {
				p.chunks[0] = p.chunks[0][n:]
			}
			p.size -= n
			p.signalLocked()
			p.mu.Unlock()
			return n, nil
		}
		if p.wclosed {
			p.mu.Unlock()
			return 0, io.EOF
		}
		ch := p.changed
		p.mu.Unlock()
		if err := c.rdl.wait(ch); err != nil {
			return 0, err
		}
	}
}

func (c *pipeConn) Write(b []byte) (int, error) {
	p := c.wr
	for {
		if c.isClosed() {
			return 0, io.ErrClosedPipe
		}
		if c.wdl.expired() {
			return 0, os.ErrDeadlineExceeded
		}
		p.mu.Lock()
		if p.rclosed || p.wclosed {
			p.mu.Unlock()
			return 0, io.ErrClosedPipe
		}
		if p.size == 0 || p.size+len(b) <= p.capacity {
			if len(b) > 0 {
				p.chunks = append(p.chunks, append([]byte(nil), b...))
				p.size += len(b)
				p.signalLocked()
			}
			p.mu.Unlock()
			return len(b), nil
		}
		ch := p.changed
		p.mu.Unlock()
		if err := c.wdl.wait(ch); err != nil {
			return 0, err
		}
	}
}

// CloseWrite half-closes the conn: the peer reads io.EOF after the data
// already written.
func (c *pipeConn) CloseWrite() error {
	if c.isClosed() {
		return io.ErrClosedPipe
	}
	p := c.wr
	p.mu.Lock()
	p.wclosed = true
	p.signalLocked()
	p.mu.Unlock()
	return nil
}

func (c *pipeConn) Close() error {
	c.closeOnce.Do(func() {
		c.closedMu.Lock()
		c.closed = true
		c.closedMu.Unlock()
		for _, p := range []*pipeBuf{c.rd, c.wr} {
			p.mu.Lock()
			if p == c.rd {
				p.rclosed = true
				p.chunks, p.size = nil, 0
			} else {
				p.wclosed = true
			}
			p.signalLocked()
			p.mu.Unlock()
		}
	})
	return nil
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }

func (c *pipeConn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}
func (c *pipeConn) SetReadDeadline(t time.Time) error  { c.rdl.set(t); return nil }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }
