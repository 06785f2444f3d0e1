// Package openstdio speaks com.apple.coredevice.openstdiosocket, the raw
// service that carries a launched app's standard input, output and error
// (docs/protocols/coredevice.md §4), in both roles:
//
//	host                         device
//	connect ───────────────────▶
//	        ◀─────────────────── 16 bytes: a UUID naming this socket
//	launchapplication {standardIOIdentifiers: {standardOutput: <uuid>, …}}
//	        ◀──────────────────▶ the process's output and input, raw bytes
//	        ◀─────────────────── close when the process ends
package openstdio

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/xpc"
)

// Stdio is the host's end: the socket and the UUID to name in a launch.
type Stdio struct {
	net.Conn
	ID xpc.UUID
}

// idTimeout bounds the wait for the device's UUID when ctx has no deadline.
const idTimeout = 10 * time.Second

// Open connects to the device's openstdiosocket through o and reads the
// UUID the device assigns.
func Open(ctx context.Context, o reach.Opener) (*Stdio, error) {
	nc, err := o.Open(ctx, reach.OpenStdioSocket)
	if err != nil {
		return nil, err
	}
	s, err := ReadID(ctx, nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("openstdio: %s: %w", o.UDID(), err)
	}
	return s, nil
}

// ReadID reads the 16-byte UUID the device sends first on nc.
func ReadID(ctx context.Context, nc net.Conn) (*Stdio, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(idTimeout)
	}
	nc.SetReadDeadline(dl)
	stop := deadline.Interrupt(ctx, nc.SetReadDeadline)
	var id xpc.UUID
	_, err := io.ReadFull(nc, id[:])
	stop()
	nc.SetReadDeadline(time.Time{})
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("reading the socket's UUID: %w", err)
	}
	return &Stdio{Conn: nc, ID: id}, nil
}

// Registry is the device's side: it names each accepted socket and hands
// it to the launch that names it. Safe for concurrent use.
type Registry struct {
	// Rand is the source of UUIDs; nil is crypto/rand.
	Rand io.Reader

	mu      sync.Mutex
	waiting map[xpc.UUID]*stream
}

// maxBuffered bounds what a host may send before its socket is claimed.
const maxBuffered = 64 << 10

// Serve is the device role of one connection (a reach.Handler): send a
// fresh UUID, then hold the socket until a launch claims it, the host
// hangs up, or ctx ends; once claimed, until the process is done with it.
func (r *Registry) Serve(ctx context.Context, conn net.Conn) {
	id, err := xpc.NewRandomUUID(r.Rand)
	if err != nil {
		return
	}
	// Registered before the host learns the UUID: a launch may name it the
	// moment the host has read it.
	s := newStream(conn)
	r.mu.Lock()
	if r.waiting == nil {
		r.waiting = map[xpc.UUID]*stream{}
	}
	r.waiting[id] = s
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.waiting[id] == s {
			delete(r.waiting, id)
		}
		r.mu.Unlock()
	}()
	if _, err := conn.Write(id[:]); err != nil {
		return
	}
	go s.pump()
	select {
	case <-ctx.Done():
	case <-s.hungUp: // before a launch took it
	case <-s.claimed:
		select {
		case <-ctx.Done():
		case <-s.closed:
		}
	}
	conn.Close()
	<-s.pumped
}

// Claim hands the socket named id to a process: its output is written to
// the returned stream, its input read from it. The process closes it when
// it ends. It reports false when no unclaimed socket has that UUID.
func (r *Registry) Claim(id xpc.UUID) (io.ReadWriteCloser, bool) {
	r.mu.Lock()
	s, ok := r.waiting[id]
	if ok {
		delete(r.waiting, id)
	}
	r.mu.Unlock()
	if !ok || !s.claim() {
		return nil, false
	}
	return s, true
}

// stream is an accepted socket: one goroutine reads the host's bytes into
// a bounded buffer, so a host that hangs up before its socket is claimed
// is noticed, and bytes it sent early reach the process.
type stream struct {
	conn net.Conn

	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	err     error
	isClaim bool
	isClose bool

	claimed chan struct{}
	closed  chan struct{}
	hungUp  chan struct{}
	pumped  chan struct{}
}

func newStream(c net.Conn) *stream {
	s := &stream{conn: c, claimed: make(chan struct{}), closed: make(chan struct{}), hungUp: make(chan struct{}), pumped: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *stream) pump() {
	defer close(s.pumped)
	b := make([]byte, 4096)
	for {
		n, err := s.conn.Read(b)
		s.mu.Lock()
		s.buf = append(s.buf, b[:n]...)
		if err != nil {
			s.err = err
			if !s.isClaim {
				close(s.hungUp)
			}
		}
		s.cond.Broadcast()
		for err == nil && len(s.buf) >= maxBuffered && !s.isClose {
			s.cond.Wait()
		}
		done := err != nil || s.isClose
		s.mu.Unlock()
		if done {
			return
		}
	}
}

func (s *stream) claim() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClaim || s.err != nil {
		return false
	}
	s.isClaim = true
	close(s.claimed)
	return true
}

// Read returns the host's input.
func (s *stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.buf) == 0 && s.err == nil && !s.isClose {
		s.cond.Wait()
	}
	if len(s.buf) > 0 {
		n := copy(p, s.buf)
		s.buf = s.buf[n:]
		s.cond.Broadcast()
		return n, nil
	}
	if s.isClose {
		return 0, net.ErrClosed
	}
	return 0, s.err
}

// Write sends the process's output to the host.
func (s *stream) Write(p []byte) (int, error) { return s.conn.Write(p) }

// Close ends the process's use of the socket; the device closes it.
func (s *stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isClose {
		s.isClose = true
		close(s.closed)
		s.cond.Broadcast()
	}
	return nil
}
