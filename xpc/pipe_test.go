package xpc

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// bufPipe returns a connected pair of in-memory net.Conns, each direction
// buffering up to size bytes. Unlike net.Pipe, both ends can write first
// (HTTP/2 peers do, and would deadlock on net.Pipe; x/crypto's
// ssh/mempipe_test.go is the model). Blocking uses channels, so it works
// inside testing/synctest bubbles; read deadlines are supported.
func bufPipe(size int) (net.Conn, net.Conn) {
	a2b, b2a := newHalf(size), newHalf(size)
	return &pipeEnd{r: b2a, w: a2b, name: "a"}, &pipeEnd{r: a2b, w: b2a, name: "b"}
}

type half struct {
	mu     sync.Mutex
	buf    []byte
	size   int
	data   chan struct{} // signalled when bytes arrive
	space  chan struct{} // signalled when bytes are consumed
	closed chan struct{}
	once   sync.Once
}

func newHalf(size int) *half {
	return &half{size: size, data: make(chan struct{}, 1), space: make(chan struct{}, 1), closed: make(chan struct{})}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (h *half) close() { h.once.Do(func() { close(h.closed) }) }

type pipeEnd struct {
	r, w *half
	name string

	dmu      sync.Mutex
	deadline time.Time
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

func (p *pipeEnd) LocalAddr() net.Addr  { return pipeAddr("pipe-" + p.name) }
func (p *pipeEnd) RemoteAddr() net.Addr { return pipeAddr("pipe-peer-of-" + p.name) }

func (p *pipeEnd) Read(b []byte) (int, error) {
	for {
		h := p.r
		h.mu.Lock()
		if len(h.buf) > 0 {
			n := copy(b, h.buf)
			h.buf = h.buf[n:]
			h.mu.Unlock()
			signal(h.space)
			return n, nil
		}
		h.mu.Unlock()
		select {
		case <-h.closed:
			return 0, io.EOF
		default:
		}
		p.dmu.Lock()
		dl := p.deadline
		p.dmu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-h.data:
		case <-h.closed:
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (p *pipeEnd) Write(b []byte) (int, error) {
	h := p.w
	written := 0
	for written < len(b) {
		select {
		case <-h.closed:
			return written, net.ErrClosed
		default:
		}
		h.mu.Lock()
		n := min(h.size-len(h.buf), len(b)-written)
		if n > 0 {
			h.buf = append(h.buf, b[written:written+n]...)
			written += n
		}
		h.mu.Unlock()
		if n > 0 {
			signal(h.data)
			continue
		}
		select {
		case <-h.space:
		case <-h.closed:
		}
	}
	return written, nil
}

func (p *pipeEnd) Close() error {
	p.r.close()
	p.w.close()
	return nil
}

func (p *pipeEnd) SetReadDeadline(t time.Time) error {
	p.dmu.Lock()
	p.deadline = t
	p.dmu.Unlock()
	signal(p.r.data) // wake a blocked Read to re-check
	return nil
}

func (p *pipeEnd) SetDeadline(t time.Time) error      { return p.SetReadDeadline(t) }
func (p *pipeEnd) SetWriteDeadline(t time.Time) error { return nil }
