package usbmux

import (
	"errors"
	"net"
	"sync"
	"time"
)

// PortHandler is a served device's side of Connect: it decides what answers
// on each TCP port of the device.
type PortHandler interface {
	// OpenPort returns the function that serves a connection to port, or
	// false when nothing listens there (the client then gets Result 3,
	// connection refused). The server calls the function on its own
	// connection goroutine after replying Result 0; the function owns conn
	// and returns when done with it. Server.Close closes conn to make it
	// return.
	OpenPort(port uint16) (serve func(conn net.Conn), ok bool)
}

// PortFunc adapts a function to PortHandler. Every port is open: Connect
// never gets Result 3, whatever the port; use PortMux to refuse ports.
type PortFunc func(port uint16, conn net.Conn)

// OpenPort implements PortHandler.
func (f PortFunc) OpenPort(port uint16) (func(net.Conn), bool) {
	return func(conn net.Conn) { f(port, conn) }, true
}

// PortMux is a PortHandler built from fixed ports (lockdownd on 62078) and
// one-shot ports handed out for started services, the way lockdownd's
// StartService opens a fresh port for exactly one connection.
type PortMux struct {
	mu      sync.Mutex
	fixed   map[uint16]func(net.Conn)
	once    map[uint16]*oneShot
	next    uint16
	oneTTL  time.Duration
	closing bool
}

type oneShot struct {
	serve func(net.Conn)
	timer *time.Timer
}

// NewPortMux returns an empty PortMux. One-shot ports not connected to
// within ttl are withdrawn (0 means 30 s).
func NewPortMux(ttl time.Duration) *PortMux {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	return &PortMux{fixed: map[uint16]func(net.Conn){}, once: map[uint16]*oneShot{}, next: firstServicePort, oneTTL: ttl}
}

// Service ports are drawn from the dynamic range, as on the device (the
// references show ports such as 49152–65535 in StartService replies).
const firstServicePort = 49152

// Handle serves every connection to port with serve.
func (m *PortMux) Handle(port uint16, serve func(net.Conn)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fixed[port] = serve
}

// ErrNoFreePort: every dynamic port has a pending one-shot listener.
var ErrNoFreePort = errors.New("usbmux: no free device port")

// ListenOnce reserves a free dynamic port whose next connection (within the
// mux's ttl) is passed to serve, and returns the port.
func (m *PortMux) ListenOnce(serve func(net.Conn)) (uint16, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return 0, net.ErrClosed
	}
	for range 65536 - firstServicePort {
		p := m.next
		m.next++
		if m.next == 0 {
			m.next = firstServicePort
		}
		if _, busy := m.once[p]; busy {
			continue
		}
		if _, busy := m.fixed[p]; busy {
			continue
		}
		o := &oneShot{serve: serve}
		o.timer = time.AfterFunc(m.oneTTL, func() { m.withdraw(p, o) })
		m.once[p] = o
		return p, nil
	}
	return 0, ErrNoFreePort
}

func (m *PortMux) withdraw(p uint16, o *oneShot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.once[p] == o {
		delete(m.once, p)
	}
}

// OpenPort implements PortHandler; a one-shot port is consumed.
func (m *PortMux) OpenPort(port uint16) (func(net.Conn), bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, ok := m.once[port]; ok {
		delete(m.once, port)
		o.timer.Stop()
		return o.serve, true
	}
	serve, ok := m.fixed[port]
	return serve, ok
}

// Close withdraws every pending one-shot port and refuses new ones.
func (m *PortMux) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closing = true
	for p, o := range m.once {
		o.timer.Stop()
		delete(m.once, p)
	}
	return nil
}
