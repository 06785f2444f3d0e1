package tunneld

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
	"golang.zx2c4.com/wireguard/tun"
)

// establisher turns a discovered path into a running tunnel through
// establish.Establish (tunnel.md §10: P1 through usbmuxd with
// pymobiledevice3's autopair, P2 over USB-NCM with its pairing there, P3
// over Wi-Fi, P1 over Wi-Fi lockdown), then adds what the daemon serves
// next to it. Every tunnel's RSD catalog is read once it is up
// (tunneld-api.md §3.2: appium lists an entry as ready only with
// services), which also proves the RSD reachable before the tunnel is
// listed.
type establisher struct {
	mux       *usbmux.Client // nil: no usbmuxd
	records   classicRecords
	store     pairing.RecordStore
	hostName  string
	hostUUID  xpc.UUID
	protocol  establish.Protocol
	userspace bool
	// newKernelTUN builds a kernel TUN; tests replace it.
	newKernelTUN func(tunnel.Params) (tun.Device, error)
	// kernelDial reaches addresses behind kernel TUNs.
	kernelDial  func(ctx context.Context, network, address string) (net.Conn, error)
	catalogWait time.Duration
	// advertiseFn is Config.Advertise.
	advertiseFn func(context.Context, AdvertiseRequest) (Advert, error)
	// loopback gives userspace tunnels their loopback address (loopback.go).
	loopback *loopbackPool
	// establish is Config.Establish.
	establish func(context.Context, discovery.Event, establish.Options) (*establish.Tunnel, error)
	log       *slog.Logger
}

// tunnelMeta is what the daemon keeps with each tunnel (entry.Meta).
type tunnelMeta struct {
	// mu guards services and catalogAt, which refresh-services replaces
	// while the APIs read them.
	mu            sync.Mutex
	services      []rsdapi.Service
	catalogAt     time.Time
	userspacePort uint16
	// advert, if set, is listed instead of the tunnel's RSD and catalog.
	advert *Advert
	// relay, if set, serves the device's ports at a loopback address of
	// its own (userspace mode), which the listing then gives.
	relay *utun.PortRelay
	// dial reaches the device through the tunnel (refresh-services).
	dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// catalog returns the service list and when it was read.
func (m *tunnelMeta) catalog() ([]rsdapi.Service, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.services, m.catalogAt
}

// setCatalog replaces the service list and its time.
func (m *tunnelMeta) setCatalog(svcs []rsdapi.Service, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.services, m.catalogAt = svcs, at
}

// touchCatalog marks the list as read at at.
func (m *tunnelMeta) touchCatalog(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.catalogAt = at
}

// servedTunnel is the manager's view of a tunnel plus what the daemon
// added to it (go-ios's userspace proxy, the loopback relay), closed with
// it.
type servedTunnel struct {
	link
	proxy *utun.Forwarder
	relay *utun.PortRelay
}

func (l *servedTunnel) Close() error {
	if l.proxy != nil {
		l.proxy.Close()
	}
	if l.relay != nil {
		l.relay.Close()
	}
	return l.link.Close()
}

// hostTUN builds the host side for one tunnel and remembers how to dial
// through it: the kernel's routing, or the userspace stack.
type hostTUN struct {
	e  *establisher
	ns *utun.Netstack
}

func (h *hostTUN) newTUN(p tunnel.Params) (tun.Device, error) {
	if !h.e.userspace {
		return h.e.newKernelTUN(p)
	}
	ns, err := utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
	if err != nil {
		return nil, err
	}
	h.ns = ns
	return ns, nil
}

func (h *hostTUN) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if h.ns != nil {
		return h.ns.DialContext(ctx, network, address)
	}
	return h.e.kernelDial(ctx, network, address)
}

// options are establish.Establish's for one attempt: usbmuxd, the record
// folder (RemotePairing records, and classic ones as pymobiledevice3 keeps
// them: a second home for lockdown autopair, the only one over Wi-Fi
// lockdown), pairing over lockdown and over USB-NCM as pymobiledevice3's
// tunneld does (the attempt timeout bounds the Trust dialog).
func (e *establisher) options(h *hostTUN, udid string) establish.Options {
	opt := establish.Options{
		NewTUN:          h.newTUN,
		UDID:            udid,
		Protocol:        e.protocol,
		Records:         e.store,
		HostName:        e.hostName,
		HostUUID:        e.hostUUID,
		Logger:          e.log,
		Usbmux:          e.mux,
		PairRSD:         true,
		LockdownRecords: e.records,
		Pair: lockdown.PairOptions{
			HostName: e.hostName,
			OnPrompt: func() { e.log.Info("tunneld: tap Trust on the iPhone (pairing over lockdown)", "udid", udid) },
		},
	}
	if e.records.store.Dir != "" {
		opt.Pair.Store = e.records
	}
	return opt
}

// Establish implements builder.
func (e *establisher) Establish(ctx context.Context, path discovery.Event) (*established, error) {
	if path.Source == discovery.SourceUsbmux && e.mux == nil {
		return nil, &establish.Error{Device: path.UDID, Step: establish.StepUsbmux, Err: errors.New("usbmuxd monitor disabled")}
	}
	h := &hostTUN{e: e}
	t, err := e.establish(ctx, path, e.options(h, path.UDID))
	if err != nil {
		return nil, classify(path.UDID, err)
	}
	udid, params := t.Identifier, t.Params
	steps, last := slices.Clip(t.Steps), time.Now()
	mark := func(step string) {
		now := time.Now()
		steps = append(steps, establish.StepTime{Step: step, Took: now.Sub(last)})
		last = now
	}
	meta := &tunnelMeta{dial: h.dial}
	out := &servedTunnel{link: t}
	rsdAddr := t.RSD()
	switch {
	case e.advertiseFn != nil:
		// The advertised RSD reads the catalog itself (and is reached
		// without the tunnel): no session of our own, no userspace proxy.
		if err := e.advertise(ctx, udid, rsdAddr, h, t.Done(), meta); err != nil {
			t.Close()
			return nil, &establish.Error{Device: udid, Step: "advertise", Err: err}
		}
		mark(stepCatalog)
	default:
		e.readCatalog(ctx, h, udid, rsdAddr, meta)
		mark(stepCatalog)
		if e.userspace {
			// go-ios's clients reach every device port through one
			// 127.0.0.1 port of ours (userspaceTunPort).
			var ln net.Listener
			err := errors.New("no userspace stack")
			if h.ns != nil {
				ln, err = net.Listen("tcp", "127.0.0.1:0")
			}
			if err != nil {
				t.Close()
				return nil, &establish.Error{Device: udid, Step: "userspace proxy", Err: err}
			}
			out.proxy = utun.NewPreambleForwarder(ln, h.ns.DialContext, e.log)
			meta.userspacePort = uint16(ln.Addr().(*net.TCPAddr).Port)
			out.relay = e.relayLoopback(udid, rsdAddr, h, meta)
			meta.relay = out.relay
			mark(stepRelay)
		}
	}
	return &established{UDID: udid, Interface: t.Interface, Params: params, Protocol: t.Protocol, Link: out, Meta: meta, Steps: steps}, nil
}

// relayLoopback relays a userspace tunnel's RSD port and catalog ports at
// the device's loopback address (loopback.go). Without one the tunnel is
// listed at its tunnel address, which only go-ios's userspace proxy
// reaches, and the log says so.
func (e *establisher) relayLoopback(udid string, rsdAddr netip.AddrPort, h *hostTUN, meta *tunnelMeta) *utun.PortRelay {
	r, err := e.loopback.relay(udid, rsdAddr.Addr(), rsdAddr.Port(), h.ns.DialContext)
	if err != nil {
		e.log.Warn("tunneld: userspace tunnel listed at its tunnel address, which only go-ios's userspace proxy reaches",
			"udid", udid, "address", rsdAddr.String(), "userspace_proxy_port", meta.userspacePort, "reason", err)
		return nil
	}
	if err := r.AddAll(servicePorts(meta.services)); err != nil {
		e.log.Warn("tunneld: some of the device's service ports are not relayed at its loopback address", "udid", udid, "err", err)
	}
	e.log.Info("tunneld: userspace tunnel listed at a loopback address of its own", "udid", udid,
		"address", r.Local().String(), "rsd_port", rsdAddr.Port(), "ports_relayed", len(r.Ports()), "tunnel_address", rsdAddr.Addr().String())
	return r
}

// servicePorts lists the catalog's ports.
func servicePorts(svcs []rsdapi.Service) []uint16 {
	ports := make([]uint16, 0, len(svcs))
	for _, s := range svcs {
		ports = append(ports, s.Port)
	}
	return ports
}

// readCatalog fetches the trusted RSD's service list through the tunnel.
// A failure is logged, not fatal: the tunnel works and a client may still
// reach RSD later (appium then lists the entry as not ready).
func (e *establisher) readCatalog(ctx context.Context, h *hostTUN, udid string, addr netip.AddrPort, meta *tunnelMeta) {
	ctx, cancel := context.WithTimeout(ctx, e.catalogWait)
	defer cancel()
	svcs, err := readServices(ctx, h.dial, addr.String(), e.hostUUID)
	if err != nil {
		e.log.Warn("tunneld: trusted RSD not readable", "udid", udid, "rsd", addr.String(), "err", err)
		return
	}
	meta.setCatalog(svcs, time.Now())
}
