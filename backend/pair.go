package backend

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/discovery/mdns"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// The device role towards clients (remotepairing.md §9, §9.7). The backend
// has its own pairing identity per device (it cannot sign as the iPhone),
// kept with the hosts paired with it in StateDir; the handshake a client
// reads is the real device's own (peerDeviceInfo, deviceOptions, protocol
// versions), read once per device through the tunnel from the device's
// tunnel service, and a client that pairs with the backend gets tunnels
// whose packets the backend relays to the device (clienttunnel.go).

// pairState is the pairing role for one device (by UDID).
type pairState struct {
	udid  string
	store *identityStore
	info  pairing.HandshakeInfo
	cfg   pairing.ServerConfig // CreateListener set per local address

	mu      sync.Mutex
	servers map[string]*pairing.Server // by the local address clients reached
}

// server is the pairing device role for connections that reached the
// backend at local: createListener opens the tunnel port on that address
// (remotepairing.md §9.5: the listener is where the control channel is).
func (ps *pairState) server(b *Backend, local net.Addr) (*pairing.Server, error) {
	key := local.String()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if s := ps.servers[key]; s != nil {
		return s, nil
	}
	cfg := ps.cfg
	cfg.CreateListener = func(ctx context.Context, host string, req pairing.ListenerRequest) (*pairing.Listener, error) {
		return b.createListener(ctx, local, host, req)
	}
	s, err := pairing.NewServer(&cfg)
	if err != nil {
		return nil, err
	}
	ps.servers[key] = s
	return s, nil
}

// pairHandshakeTimeout bounds reading the device's pairing handshake.
const pairHandshakeTimeout = 10 * time.Second

// pairStateFor returns the pairing role for the device of h, creating it
// (identity from StateDir, handshake from the device) the first time.
func (b *Backend) pairStateFor(ls *linkState, h *rsd.Handshake) (*pairState, error) {
	udid := h.Properties.String("UniqueDeviceID")
	b.mu.Lock()
	ps := b.pair
	b.mu.Unlock()
	if ps != nil && ps.udid == udid {
		return ps, nil
	}
	store, err := openIdentityStore(b.cfg.StateDir, udid, b.rand())
	if err != nil {
		return nil, err
	}
	info, err := b.devicePairingInfo(ls, h)
	if err != nil {
		// The trusted RSD need not list the tunnel service (the untrusted
		// one on USB-NCM does). The backend then describes the device from
		// its RSD Properties and the name lockdown gives, and offers its
		// own capabilities (the values of remotepairing.md §9.2).
		b.log.Info("backend: describing the device to pairing clients from its RSD Properties", "udid", udid, "why", err)
		name := b.lockdownDeviceName(ls, h)
		info = &pairing.HandshakeInfo{
			WireProtocolVersion: 26, MinimumSupportedWireProtocolVersion: 8,
			Options: pairing.DeviceOptions{AllowsPairSetup: true, AllowsIncomingTunnelConnections: true, AllowsSharingSensitiveInfo: true},
			Device:  pairing.PeerDeviceInfo{Identifier: udid, UDID: udid, Name: firstNonEmpty(name, deviceName(h.Properties)), Model: h.Properties.String("ProductType")},
		}
	}
	id := store.identity()
	ps = &pairState{udid: udid, store: store, info: *info, servers: map[string]*pairing.Server{}}
	ps.cfg = pairing.ServerConfig{
		Rand: b.cfg.Rand,
		Identity: pairing.DeviceIdentity{
			Identifier: id.Identifier, Seed: id.Seed, AltIRK: id.AltIRK, BTAddr: id.BTAddr, MAC: id.MAC,
			Model: h.Properties.String("ProductType"), Name: firstNonEmpty(info.Device.Name, deviceName(h.Properties)),
			SerialNumber: h.Properties.String("SerialNumber"), UDID: udid,
		},
		Handshake:  *info,
		Mode:       pairing.ModeTrust,
		Consent:    b.consent,
		Hosts:      store,
		OnVerified: func(host string) { b.log.Info("backend: client verified", "udid", udid, "host", host) },
		OnPaired: func(h pairing.PairedHost) {
			b.log.Info("backend: client paired", "udid", udid, "host", h.Identifier, "name", h.Info.Name)
		},
		Logger: b.log,
	}
	// The identity is checked once, here, rather than at a client's first
	// connection.
	if _, err := pairing.NewServer(&ps.cfg); err != nil {
		return nil, err
	}
	return ps, nil
}

func (b *Backend) rand() io.Reader {
	if b.cfg.Rand != nil {
		return b.cfg.Rand
	}
	return rand.Reader
}

func (b *Backend) consent(ctx context.Context, host string) (bool, error) {
	if b.cfg.Consent == nil {
		b.log.Info("backend: accepting a client's pairing", "host", host)
		return true, nil
	}
	return b.cfg.Consent(ctx, host)
}

func deviceName(p *xpc.Dict) string {
	return firstNonEmpty(p.String("DeviceName"), p.String("ProductType"))
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// devicePairingInfo reads the device's RemotePairing handshake (only the
// handshake: no verify, no pairing) from its tunnel service through the
// tunnel.
func (b *Backend) devicePairingInfo(ls *linkState, h *rsd.Handshake) (*pairing.HandshakeInfo, error) {
	s, ok := h.Service(pairing.TunnelServiceName)
	if !ok {
		return nil, errors.New("the device lists no " + pairing.TunnelServiceName)
	}
	ctx, cancel := context.WithTimeout(ls.ctx, pairHandshakeTimeout)
	defer cancel()
	addr := netip.AddrPortFrom(ls.RSD.Addr(), s.Port).String()
	nc, err := ls.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc = b.cfg.WireLog.Tap(nc, "device tunnel service "+addr)
	xc, err := xpc.Client(ctx, nc, &xpc.Config{Name: "device tunnel service " + addr, Logger: b.log})
	if err != nil {
		return nil, err
	}
	host := pairing.NewClient(pairing.NewXPC(xc), &pairing.ClientConfig{HostName: b.cfg.HostName, Logger: b.log})
	defer host.Close()
	return host.Handshake(ctx)
}

// lockdownDeviceName asks the device's trusted lockdown shim for its name
// (RSD Properties do not carry it); "" when it cannot.
func (b *Backend) lockdownDeviceName(ls *linkState, h *rsd.Handshake) string {
	const shim = "com.apple.mobile.lockdown.remote.trusted"
	s, ok := h.Service(shim)
	if !ok {
		return ""
	}
	ctx, cancel := context.WithTimeout(ls.ctx, pairHandshakeTimeout)
	defer cancel()
	nc, err := ls.Dial(ctx, "tcp", netip.AddrPortFrom(ls.RSD.Addr(), s.Port).String())
	if err != nil {
		return ""
	}
	nc = b.cfg.WireLog.Tap(nc, "device lockdown")
	sc, err := lockdown.ShimClient(ctx, nc, shim, b.cfg.HostName, nil)
	if err != nil {
		b.log.Debug("backend: lockdown shim", "err", err)
		nc.Close()
		return ""
	}
	defer sc.Close()
	if err := sc.Send(ctx, map[string]any{"Label": b.cfg.HostName, "Request": "GetValue", "Key": "DeviceName"}); err != nil {
		return ""
	}
	var reply struct{ Value any }
	if err := sc.Receive(ctx, &reply); err != nil {
		return ""
	}
	name, _ := reply.Value.(string)
	return name
}

// createListener answers a client's createListener: a tunnel port on la,
// the address the client reached us on, whose tunnel ends in the boot's
// client tunnel stack.
func (b *Backend) createListener(ctx context.Context, la net.Addr, host string, req pairing.ListenerRequest) (*pairing.Listener, error) {
	b.mu.Lock()
	v := b.view
	b.mu.Unlock()
	if v == nil {
		return nil, errors.New("no device attached")
	}
	ct, err := v.boot.clientTunnels(v.device)
	if err != nil {
		return nil, err
	}
	listen := establish.Listen{
		TCP: func() (net.Listener, error) { return net.Listen("tcp", hostPort(la, 0)) },
		UDP: func() (net.PacketConn, error) { return net.ListenPacket("udp", hostPort(la, 0)) },
	}
	l, err := ct.ep.CreateListener(listen)(ctx, host, req)
	if err == nil {
		b.log.Info("backend: client tunnel listener", "host", host, "transport", req.Transport, "port", l.Port)
	}
	return l, err
}

// advertise starts the mDNS adverts for the current device on every
// configured interface, replacing earlier ones.
func (b *Backend) advertise(ls *linkState, v *view) {
	if len(b.cfg.MDNS) == 0 || (b.pairLn == nil && b.utLn == nil) {
		return
	}
	b.mu.Lock()
	ps := b.pair
	old := b.mdns
	b.mdns = nil
	b.mu.Unlock()
	for _, r := range old {
		r.Close()
	}
	props := v.device.Properties
	serial := firstNonEmpty(props.String("SerialNumber"), props.String("UniqueDeviceID"))
	hostName := "iosmux-" + dnsLabel(serial) + ".local."
	var services []mdns.Announcement
	if b.utLn != nil {
		services = append(services, mdns.Announcement{Instance: dnsLabel(deviceName(props)), Type: mdns.ServiceRemoted,
			Host: hostName, Port: portOf(b.utLn.Addr())})
	}
	if b.pairLn != nil && ps != nil {
		id := ps.store.identity()
		tag, err := discovery.RemotePairingAuthTag(id.AltIRK, id.Identifier)
		if err != nil {
			b.log.Warn("backend: _remotepairing._tcp authTag", "err", err)
		} else {
			services = append(services, mdns.Announcement{Instance: dnsLabel(id.Identifier[:8]), Type: mdns.ServiceRemotePairing,
				Host: hostName, Port: portOf(b.pairLn.Addr()),
				Text: []string{"identifier=" + id.Identifier, "authTag=" + tag, "model=" + props.String("ProductType"), "ver=24"}})
		}
	}
	var started []*mdns.Responder
	for _, ifName := range b.cfg.MDNS {
		r, err := mdns.NewResponder(mdns.ResponderConfig{Interface: ifName, Services: services, Logger: b.log})
		if err != nil {
			b.log.Warn("backend: mDNS advertisement", "interface", ifName, "err", err)
			continue
		}
		started = append(started, r)
		b.log.Info("backend: advertising on mDNS", "interface", ifName, "services", len(services))
	}
	b.mu.Lock()
	if b.link != ls || b.closed {
		b.mu.Unlock()
		for _, r := range started {
			r.Close()
		}
		return
	}
	b.mdns = append(b.mdns, started...)
	b.mu.Unlock()
}

// dnsLabel keeps letters, digits and hyphens (an instance label may not
// hold dots, mdns.Announcement).
func dnsLabel(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, s)
	if s == "" {
		return "iPhone"
	}
	return s
}
