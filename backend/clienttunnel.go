package backend

import (
	"net"
	"sync"

	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
)

// Client tunnels (doc.go, "Tunnels through the backend"): a client that
// paired with the backend opens a TLS-PSK (or QUIC) tunnel to it, and the
// backend plays the device's end of CDTunnel with a userspace stack of its
// own (tunnel.Server: a ULA /64 per boot, the backend at ::1, clients at
// ::2, ::3 …). Every TCP connection a client opens to ::1 is terminated
// there and relayed as a new connection through the device's tunnel:
//
//	[ULA::1]:rsdPort        the backend's RSD (same Handshake as on Listen)
//	[ULA::1]:tunnel service the backend's pairing (as on Listen)
//	[ULA::1]:forwarder port the service it forwards, wherever the device
//	                        has it now (so the Handshake's ports work here)
//	[ULA::1]:any other port the same port on the device (ports a service
//	                        hands out at run time)
//
// The client thus never talks to the device's RSD itself: the device keeps
// seeing one RSD peer, the backend's discovery session.

// clientTunnels is one boot's client tunnel stack.
type clientTunnels struct {
	b   *Backend
	bt  *boot
	dev *tunnel.Server
	ep  *establish.Server

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// clientTunnels returns the boot's client tunnel stack, creating it on
// first use.
func (bt *boot) clientTunnels(h *rsd.Handshake) (*clientTunnels, error) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if bt.closed {
		return nil, net.ErrClosed
	}
	if bt.tunnels != nil {
		return bt.tunnels, nil
	}
	b := bt.b
	dev, err := tunnel.NewServer(tunnel.ServerConfig{RSDPort: b.rsdPort, Rand: b.cfg.Rand, Logger: b.log})
	if err != nil {
		return nil, err
	}
	ct := &clientTunnels{b: b, bt: bt, dev: dev}
	ct.ep, err = establish.NewServer(establish.ServerConfig{
		Tunnels: dev,
		QUIC:    establish.SupportsQUIC(h.Properties.String("OSVersion")),
		Watch: func(s *tunnel.Session) func() {
			p := s.Params()
			b.log.Info("backend: client tunnel up", "client", p.ClientAddress.String(), "backend", p.ServerAddress.String(), "mtu", p.MTU)
			return func() {
				st := s.Stats()
				b.log.Info("backend: client tunnel down", "client", p.ClientAddress.String(), "err", s.Err(), "stats", st)
			}
		},
		Logger: b.log,
	})
	if err != nil {
		dev.Close()
		return nil, err
	}
	dev.Stack().ForwardTCP(1024, ct.handle)
	bt.tunnels = ct
	return ct, nil
}

// close ends every client tunnel and relay of the boot and waits for them.
func (ct *clientTunnels) close() {
	ct.mu.Lock()
	ct.closed = true
	ct.mu.Unlock()
	ct.ep.Close()
	ct.dev.Close()
	ct.wg.Wait()
}

// track counts a handler in, unless closing.
func (ct *clientTunnels) track() bool {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.closed {
		return false
	}
	ct.wg.Add(1)
	return true
}

// handle serves one SYN a client sent to the backend's tunnel address. It
// runs on a goroutine of the stack's forwarder; track makes close wait for
// it. The device side is dialled before the client's handshake completes,
// so a port the device refuses is refused to the client too (RST).
func (ct *clientTunnels) handle(r *utun.TCPRequest) {
	if !ct.track() {
		r.Refuse()
		return
	}
	defer ct.wg.Done()
	b := ct.b
	v := b.current()
	if v == nil || v.boot != ct.bt {
		r.Refuse()
		return
	}
	port := r.LocalPort()
	switch port {
	case b.rsdPort:
		if c, err := r.Accept(); err == nil {
			v = b.freshView(v)
			b.serveHandshake(v.boot, v.server, c, "tunnel rsd")
		}
		return
	case b.tsPort:
		if c, err := r.Accept(); err == nil {
			b.serveTunnelService(c)
		}
		return
	}
	b.mu.Lock()
	name, isFwd := b.fwdPorts[port]
	b.mu.Unlock()
	var d net.Conn
	var err error
	if isFwd {
		d, v, err = b.dialService(v, name)
	} else {
		d, err = b.dialDevice(v, port)
	}
	if err != nil {
		b.log.Debug("backend: tunnel connection refused", "port", port, "service", name, "err", err)
		r.Refuse()
		return
	}
	c, err := r.Accept()
	if err != nil {
		d.Close()
		return
	}
	what := "tunnel forward"
	if isFwd {
		what += " " + name
	}
	b.relay(v, c, d, what)
}
