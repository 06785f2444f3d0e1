package sim

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// serviceSet is a table of services listening on one surface, with the
// ports of the current boot. reopen moves every service to a fresh port,
// which is what iOS 27.2 does when an RSD peer changes identity.
type serviceSet struct {
	b      *boot
	sc     *scope
	surf   surface
	listen func(port uint16) (net.Listener, error)
	// random: pick ports here (netstack) instead of letting the OS do it,
	// never one of reserved (the RSD port).
	random   bool
	reserved []uint16

	mu    sync.Mutex
	defs  []DeviceService
	lns   []net.Listener // nil for a service not listed now
	ports []uint16       // 0 for a service not listed now
	ddi   bool           // DDI services are listed
}

func newServiceSet(b *boot, sc *scope, surf surface, defs []DeviceService, random bool, listen func(uint16) (net.Listener, error), reserved ...uint16) (*serviceSet, error) {
	s := &serviceSet{b: b, sc: sc, surf: surf, listen: listen, random: random, defs: defs, reserved: reserved}
	if err := s.open(); err != nil {
		s.closeListeners()
		return nil, err
	}
	return s, nil
}

// open starts a listener per service.
func (s *serviceSet) open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openLocked(nil)
}

// openLocked listens for every listed service, avoiding the ports in avoid
// (the ones just closed: a moved service must not land on its old port).
// A service that is not listed now (a DDI service while no DDI is
// mounted) gets no listener and port 0.
func (s *serviceSet) openLocked(avoid map[uint16]bool) error {
	s.lns = make([]net.Listener, len(s.defs))
	s.ports = make([]uint16, len(s.defs))
	used := map[uint16]bool{}
	for p := range avoid {
		used[p] = true
	}
	for _, p := range s.reserved {
		used[p] = true
	}
	for i := range s.defs {
		if err := s.openOne(i, used); err != nil {
			return err
		}
	}
	return nil
}

// openOne listens for defs[i] if it is listed now. s.mu is held.
func (s *serviceSet) openOne(i int, used map[uint16]bool) error {
	def := s.defs[i]
	if !def.served() || def.DDI && !s.ddi {
		return nil
	}
	ln, port, err := s.listenOne(used)
	if err != nil {
		return fmt.Errorf("sim: listening for %s: %w", def.Name, err)
	}
	used[port] = true
	s.lns[i], s.ports[i] = ln, port
	s.b.accept(s.sc, ln, s.surf, def.serveFunc())
	return nil
}

// setDDI lists (mounted) or unlists the services that come with the
// developer disk image: mounted, they listen on fresh ports and appear in
// every Handshake sent from now on; unmounted, their listeners close.
func (s *serviceSet) setDDI(mounted bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ddi == mounted || s.lns == nil {
		s.ddi = mounted
		return nil
	}
	s.ddi = mounted
	used := map[uint16]bool{}
	for _, p := range s.reserved {
		used[p] = true
	}
	for _, p := range s.ports {
		used[p] = p != 0
	}
	var errs []error
	for i, def := range s.defs {
		if !def.DDI {
			continue
		}
		if mounted {
			errs = append(errs, s.openOne(i, used))
			continue
		}
		if ln := s.lns[i]; ln != nil {
			ln.Close()
		}
		s.lns[i], s.ports[i] = nil, 0
	}
	return errors.Join(errs...)
}

func (s *serviceSet) listenOne(used map[uint16]bool) (net.Listener, uint16, error) {
	if !s.random {
		ln, err := s.listen(0)
		if err != nil {
			return nil, 0, err
		}
		return ln, portOf(ln.Addr()), nil
	}
	var err error
	for range 32 {
		p := randomPort()
		if used[p] {
			continue
		}
		var ln net.Listener
		if ln, err = s.listen(p); err == nil {
			return ln, p, nil
		}
	}
	return nil, 0, err
}

func (s *serviceSet) closeListeners() {
	s.mu.Lock()
	lns := s.lns
	s.lns = nil
	s.mu.Unlock()
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
}

// reopen closes every service listener (the advertised ports now refuse
// connections) and listens again on fresh ports. A Handshake built meanwhile
// waits, so it lists either all old or all new ports.
func (s *serviceSet) reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.lns {
		if ln != nil {
			ln.Close()
		}
	}
	old := map[uint16]bool{}
	for _, p := range s.ports {
		old[p] = true
	}
	return s.openLocked(old)
}

// entries is the Handshake's Services with the current ports.
func (s *serviceSet) entries() []rsd.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]rsd.Service, 0, len(s.defs))
	for i, def := range s.defs {
		if i < len(s.ports) && s.ports[i] != 0 {
			out = append(out, rsd.Service{Name: def.Name, Port: s.ports[i], Entitlement: def.Entitlement, Properties: def.Properties})
		}
	}
	return out
}

// port returns the current port of a service, 0 if not listed.
func (s *serviceSet) port(name string) uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, def := range s.defs {
		if def.Name == name && i < len(s.ports) && s.ports[i] != 0 {
			return s.ports[i]
		}
	}
	return 0
}

// randomPort draws from the dynamic range, where the device's service
// ports are seen (49152–65535).
func randomPort() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return 49152 + binary.BigEndian.Uint16(b[:])%(65535-49152)
}

func portOf(a net.Addr) uint16 {
	if ta, ok := a.(*net.TCPAddr); ok {
		return uint16(ta.Port)
	}
	_, p, _ := net.SplitHostPort(a.String())
	var n int
	fmt.Sscanf(p, "%d", &n)
	return uint16(n)
}

// rsdEndpoint is the device side of one RSD port (rsd.md §2): it
// sends the Handshake listing services with their current ports. rsd.Server
// does the same for a fixed table; this one re-reads the table per
// connection and, with reattach set (iOS 27.2), applies the peer rule of
// rsd.md §3: one RSD session per tunnel (a new one closes the old) and a changed
// host UUID on a tunnel moves every service to a new port.
//
// TODO(tunnel/rsd): move next to rsd.Server once it can report the host's
// Handshake UUID as it arrives (see the report of issue 7).
type rsdEndpoint struct {
	d        *Device
	name     string
	uuid     xpc.UUID
	props    *xpc.Dict
	services *serviceSet
	reattach bool

	mu    sync.Mutex
	peers map[string]*rsdPeer // by tunnel (the host's address)
}

type rsdPeer struct {
	conn *xpc.Conn
	last xpc.UUID // the last host UUID seen on this tunnel, kept after it leaves
}

func (e *rsdEndpoint) body() *xpc.Dict {
	h := rsd.Handshake{
		MessagingProtocolVersion: e.d.prof.MessagingProtocolVersion,
		UUID:                     e.uuid,
		Properties:               e.props,
		Services:                 e.services.entries(),
	}
	return h.Body()
}

// serve runs one RSD connection: set-up, Handshake, then it stays open
// until the host leaves, watching for the host's own Handshake.
func (e *rsdEndpoint) serve(ctx context.Context, nc net.Conn) {
	setup, cancel := context.WithTimeout(ctx, 10*time.Second)
	name := e.name
	if a := nc.RemoteAddr(); a != nil { // nil: a gVisor conn its peer already reset
		name += " " + a.String()
	}
	conn, err := xpc.Server(setup, nc, &xpc.Config{Name: name})
	cancel()
	if err != nil {
		e.d.log.Debug("sim: rsd set-up failed", "udid", e.d.id.UDID, "rsd", e.name, "err", err)
		return
	}
	defer conn.Close()
	var peer *rsdPeer
	if e.reattach {
		key := hostOf(nc.RemoteAddr())
		e.mu.Lock()
		peer = e.peers[key]
		if peer == nil {
			peer = &rsdPeer{}
			e.peers[key] = peer
		}
		old := peer.conn
		peer.conn = conn
		e.mu.Unlock()
		if old != nil {
			// One RSD discovery session per tunnel: the newcomer wins.
			old.Close()
		}
		defer func() {
			e.mu.Lock()
			if peer.conn == conn {
				peer.conn = nil
			}
			e.mu.Unlock()
		}()
	}
	m := &xpc.Message{Flags: xpc.FlagsMsg, ID: rsd.DeviceMessageID, Body: e.body()}
	if err := conn.Send(ctx, xpc.RootChannel, m); err != nil {
		return
	}
	for {
		m, _, err := conn.Receive(ctx)
		if err != nil {
			return
		}
		if m.Body.String("MessageType") != rsd.HandshakeType || peer == nil {
			continue
		}
		u := m.Body.UUID("UUID")
		if u.IsZero() {
			continue
		}
		e.mu.Lock()
		changed := !peer.last.IsZero() && peer.last != u
		peer.last = u
		e.mu.Unlock()
		if changed {
			e.d.log.Info("sim: RSD peer UUID changed across reconnect; reattaching so clients re-discover it",
				"udid", e.d.id.UDID, "uuid", u)
			if err := e.services.reopen(); err != nil && !errors.Is(err, net.ErrClosed) {
				e.d.log.Warn("sim: reattach", "udid", e.d.id.UDID, "err", err)
			}
			e.d.stats.reattaches.Add(1)
		}
	}
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}
