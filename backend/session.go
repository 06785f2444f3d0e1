package backend

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// The device side: one RSD discovery session per tunnel (rsd.md
// §3), opened with our stable host UUID and kept open for as long
// as the tunnel lives, so that the device sees a single peer that never
// changes identity whatever number of clients the backend serves. When the
// session ends while the tunnel lives (another host's RSD session took the
// device's single slot, or the device re-attached its services) it is
// opened again and the Handshake re-read: ports may have moved (iOS 27.2),
// services may have appeared, or the device may have rebooted.

// linkState is one attached tunnel.
type linkState struct {
	DeviceTunnel
	ctx    context.Context // ends on detach, on the link's Done and on Close
	cancel context.CancelFunc
	// refresh asks the supervisor to re-read the Handshake; the channel
	// sent is closed once it has (or has failed to).
	refresh chan chan struct{}
}

// bootKey identifies one boot of one device: BootSessionUUID when the
// device reports it (it changes on every boot), else the Handshake UUID
// (a fresh one per boot, rsd.md §3).
type bootKey struct {
	udid string
	boot string
}

func bootKeyOf(h *rsd.Handshake) bootKey {
	k := bootKey{udid: h.Properties.String("UniqueDeviceID")}
	switch v := h.Properties.Get("BootSessionUUID").(type) {
	case xpc.UUID:
		k.boot = v.String()
	case xpc.String:
		k.boot = string(v)
	}
	if k.boot == "" {
		k.boot = "rsd:" + h.UUID.String()
	}
	return k
}

// view is what clients are told now: the device's Handshake as last read
// and the backend's answer built from it.
type view struct {
	link      *linkState
	boot      *boot
	device    *rsd.Handshake
	ports     map[string]uint16 // device service ports by name
	server    *rsd.Server       // the Handshake on Listen (and in client tunnels)
	untrusted *rsd.Server       // the Handshake on Untrusted
}

// Attach makes the backend serve the device behind l: it reads the
// device's Handshake through the tunnel (ctx bounds that), starts serving
// clients with it, and keeps one discovery session open until the tunnel
// ends or another Attach or Detach replaces it.
func (b *Backend) Attach(ctx context.Context, l DeviceTunnel) error {
	if !l.RSD.IsValid() || l.Dial == nil {
		return errors.New("backend: Link needs RSD and Dial")
	}
	lctx, cancel := context.WithCancel(b.ctx)
	ls := &linkState{DeviceTunnel: l, ctx: lctx, cancel: cancel, refresh: make(chan chan struct{}, 16)}
	c, err := b.discover(ctx, ls)
	if err != nil {
		cancel()
		return fmt.Errorf("backend: reading the device's RSD at %v: %w", l.RSD, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cancel()
		c.Close()
		return errors.New("backend: closed")
	}
	old := b.link
	b.link = ls
	b.wg.Add(1)
	b.mu.Unlock()
	if old != nil {
		old.cancel()
	}
	b.install(ls, c.Handshake)
	go b.supervise(ls, c)
	return nil
}

// Detach stops serving the current device: clients' RSD connections and
// tunnels end, new ones are refused until the next Attach.
func (b *Backend) Detach() {
	b.mu.Lock()
	ls := b.link
	b.mu.Unlock()
	if ls != nil {
		b.detach(ls)
	}
}

// detach forgets ls if it is still the current link.
func (b *Backend) detach(ls *linkState) {
	ls.cancel()
	b.mu.Lock()
	if b.link != ls {
		b.mu.Unlock()
		return
	}
	bt := b.boot
	b.link, b.boot, b.view = nil, nil, nil
	responders := b.mdns
	b.mdns = nil
	b.mu.Unlock()
	if bt != nil {
		bt.close()
	}
	for _, r := range responders {
		r.Close()
	}
	b.log.Info("backend: device detached", "rsd", ls.RSD.String())
}

// discover opens an RSD session to the device and reads its Handshake.
func (b *Backend) discover(ctx context.Context, ls *linkState) (*rsd.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.DiscoveryTimeout)
	defer cancel()
	nc, err := ls.Dial(ctx, "tcp", ls.RSD.String())
	if err != nil {
		return nil, err
	}
	nc = b.cfg.WireLog.Tap(nc, "device rsd "+ls.RSD.String())
	return rsd.NewClient(ctx, nc, &rsd.ClientConfig{
		HostUUID: b.cfg.HostUUID,
		XPC:      &xpc.Config{Name: "device rsd " + ls.RSD.String(), Logger: b.log},
	})
}

// supervise keeps the discovery session open for ls and re-reads the
// Handshake when the session ends or a forwarder asks for it.
func (b *Backend) supervise(ls *linkState, c *rsd.Client) {
	defer b.wg.Done()
	defer func() { c.Close() }()
	var waiting []chan struct{}
	answer := func() {
		for _, w := range waiting {
			close(w)
		}
		waiting = nil
	}
	defer answer()
	for {
		select {
		case <-ls.ctx.Done():
			return
		case <-ls.Done:
			b.log.Info("backend: the device's tunnel ended", "rsd", ls.RSD.String())
			b.detach(ls)
			return
		case <-c.Conn().Done():
			// Another host's session took the device's one slot (or the
			// device re-attached). Let that session finish before taking
			// the slot back, unless a forwarder needs the Handshake now.
			b.log.Debug("backend: discovery session ended", "rsd", ls.RSD.String(), "err", c.Conn().Err())
			t := time.NewTimer(sessionRetryDelay)
			select {
			case <-t.C:
			case w := <-ls.refresh:
				waiting = append(waiting, w)
			case <-ls.ctx.Done():
				t.Stop()
				return
			case <-ls.Done:
				t.Stop()
				b.detach(ls)
				return
			}
			t.Stop()
		case w := <-ls.refresh:
			waiting = append(waiting, w)
		}
	drain:
		for {
			select {
			case w := <-ls.refresh:
				waiting = append(waiting, w)
			default:
				break drain
			}
		}
		c.Close()
		// One session at a time: the old one is closed before the new one
		// opens (two at once make a device fail one of them).
		wait := retry.Backoff{Min: 250 * time.Millisecond, Max: 8 * time.Second, Jitter: -1}
		for attempt := 0; ; attempt++ {
			nc, err := b.discover(ls.ctx, ls)
			if err == nil {
				c = nc
				break
			}
			if ls.ctx.Err() != nil {
				return
			}
			b.log.Warn("backend: reading the device's Handshake failed", "rsd", ls.RSD.String(), "attempt", attempt+1, "err", err)
			answer()
			t := time.NewTimer(wait.Next())
			select {
			case <-t.C:
			case <-ls.ctx.Done():
				t.Stop()
				return
			case <-ls.Done:
				t.Stop()
				b.detach(ls)
				return
			}
		}
		b.install(ls, c.Handshake)
		answer()
	}
}

// sessionRetryDelay is how long the backend leaves the device's RSD slot
// to a host that took it before reopening its own session.
const sessionRetryDelay = 2 * time.Second

// requestRefresh asks ls's supervisor to re-read the Handshake and waits
// until it has, ctx ends, or the link goes.
func (b *Backend) requestRefresh(ctx context.Context, ls *linkState) {
	w := make(chan struct{})
	select {
	case ls.refresh <- w:
	case <-ctx.Done():
		return
	case <-ls.ctx.Done():
		return
	}
	select {
	case <-w:
	case <-ctx.Done():
	case <-ls.ctx.Done():
	}
}

// install makes h what clients see, if ls is still the current link. A new
// boot (or another device) ends the previous boot's client connections and
// gets a fresh UUID; otherwise only the service table is refreshed, and the
// forwarders keep their ports.
func (b *Backend) install(ls *linkState, h *rsd.Handshake) {
	key := bootKeyOf(h)
	names := make([]string, 0, len(h.Services))
	for _, s := range h.Services {
		names = append(names, s.Name)
	}
	if err := b.ensureForwarders(names); err != nil {
		b.log.Warn("backend: forwarder listener", "err", err)
	}
	ps, err := b.pairStateFor(ls, h)
	if err != nil {
		b.log.Warn("backend: pairing identity unavailable; clients cannot pair", "udid", key.udid, "err", err)
	}

	b.mu.Lock()
	if b.link != ls || b.closed {
		b.mu.Unlock()
		return
	}
	var old *boot
	if b.boot == nil || b.boot.key != key {
		old = b.boot
		u := b.lastUUID
		if key != b.lastBoot || u.IsZero() {
			var err error
			if u, err = xpc.NewRandomUUID(b.cfg.Rand); err != nil {
				b.mu.Unlock()
				b.log.Error("backend: drawing a UUID", "err", err)
				return
			}
		}
		b.boot = newBoot(b, key, u)
		b.lastBoot, b.lastUUID = key, u
	}
	if ps != nil || (b.pair != nil && b.pair.udid != key.udid) {
		b.pair = ps // never another device's identity
	}
	v, err := b.buildView(ls, b.boot, h)
	if err != nil {
		b.mu.Unlock()
		b.log.Error("backend: building the Handshake", "udid", key.udid, "err", err)
		return
	}
	prev := b.view
	b.view = v
	startMDNS := old != nil || prev == nil
	b.mu.Unlock()

	if old != nil {
		b.log.Info("backend: device rebooted (or replaced); ending its clients' connections", "udid", key.udid)
		old.close()
	}
	if prev == nil || old != nil {
		b.log.Info("backend: serving device", "udid", key.udid, "product", h.Properties.String("ProductType"),
			"os", h.Properties.String("OSVersion"), "services", len(h.Services), "uuid", v.server.UUID().String(), "rsd", b.Addr().String())
	} else {
		b.log.Debug("backend: device Handshake refreshed", "udid", key.udid, "services", len(h.Services))
	}
	if startMDNS {
		b.advertise(ls, v)
	}
}

// buildView maps the device's Handshake to ours: same Properties and
// protocol version, our UUID for this boot, and every service at a
// backend-owned port — its forwarder, or for the untrusted tunnel service
// the backend's own pairing. b.mu is held.
func (b *Backend) buildView(ls *linkState, bt *boot, h *rsd.Handshake) (*view, error) {
	v := &view{link: ls, boot: bt, device: h, ports: map[string]uint16{}}
	services := make([]rsd.Service, 0, len(h.Services))
	for _, s := range h.Services {
		v.ports[s.Name] = s.Port
		out := rsd.Service{Name: s.Name, Entitlement: s.Entitlement, Properties: s.Properties}
		switch f := b.fwds[s.Name]; {
		case s.Name == pairing.TunnelServiceName:
			out.Port = b.tsPort
		case f != nil:
			out.Port = f.port
		default:
			continue // no listener: better unlisted than a dead port
		}
		services = append(services, out)
	}
	xcfg := &xpc.Config{Logger: b.log}
	var err error
	v.server, err = rsd.NewServer(rsd.ServerConfig{
		Properties: h.Properties, Services: services, UUID: bt.uuid,
		MessagingProtocolVersion: h.MessagingProtocolVersion, XPC: xcfg, Logger: b.log,
	})
	if err != nil {
		return nil, err
	}
	if b.utLn != nil {
		ts := rsd.Service{Name: pairing.TunnelServiceName, Port: portOf(b.utTSLn.Addr()),
			Entitlement: "com.apple.dt.coredevice.tunnelservice.client",
			Properties:  xpc.NewDict("ServiceVersion", xpc.Int64(pairing.TunnelServiceVersion), "UsesRemoteXPC", xpc.Bool(true))}
		if s, ok := h.Service(pairing.TunnelServiceName); ok {
			ts.Entitlement, ts.Properties = s.Entitlement, s.Properties
		}
		v.untrusted, err = rsd.NewServer(rsd.ServerConfig{
			Properties: h.Properties, Services: []rsd.Service{ts}, UUID: bt.uuid,
			MessagingProtocolVersion: h.MessagingProtocolVersion, XPC: xcfg, Logger: b.log,
		})
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}

// current returns the view clients are served from, or nil.
func (b *Backend) current() *view {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.view
}

// deviceAddr is the device's address for port, through v's link.
func (v *view) deviceAddr(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(v.link.RSD.Addr(), port)
}
