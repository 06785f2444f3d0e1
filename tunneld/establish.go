package tunneld

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
	"golang.zx2c4.com/wireguard/tun"
)

// establisher turns a discovered path into a running tunnel (tunnel.md
// §10): P1 through usbmuxd with pymobiledevice3's autopair, P2 over
// USB-NCM, P3 over Wi-Fi, and P1 over Wi-Fi lockdown (mobdev2). Every
// tunnel's RSD catalog is read once it is up (tunneld-api.md §3.2: appium
// lists an entry as ready only with services), which also proves the
// RSD reachable before the tunnel is listed.
type establisher struct {
	mux       *usbmux.Client // nil: no usbmuxd
	records   classicRecords
	store     pairing.RecordStore
	hostName  string
	hostUUID  xpc.UUID
	protocol  tunnel.Protocol
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
	log      *slog.Logger
}

// tunnelMeta is what the daemon keeps with each tunnel (Entry.Meta).
type tunnelMeta struct {
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

// link is the manager's view of a tunnel plus what the daemon added to
// it (go-ios's userspace proxy, the loopback relay), closed with it.
type link struct {
	tunnel.Link
	proxy *utun.Forwarder
	relay *utun.PortRelay
}

func (l *link) Close() error {
	if l.proxy != nil {
		l.proxy.Close()
	}
	if l.relay != nil {
		l.relay.Close()
	}
	return l.Link.Close()
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

func (e *establisher) options(h *hostTUN, udid string) tunnel.Options {
	return tunnel.Options{
		NewTUN:   h.newTUN,
		Protocol: e.protocol,
		UDID:     udid,
		Records:  e.store,
		HostName: e.hostName,
		HostUUID: e.hostUUID,
		Logger:   e.log,
	}
}

// Establish implements tunnel.Establisher.
func (e *establisher) Establish(ctx context.Context, path discovery.Event) (*tunnel.Established, error) {
	h := &hostTUN{e: e}
	var (
		l      tunnel.Link
		udid   string
		ifName string
		params tunnel.Params
		proto  = tunnel.TCP
		err    error
	)
	switch path.Source {
	case discovery.SourceUsbmux:
		var t *tunnel.Tunnel
		t, err = e.coreDeviceProxy(ctx, path, h)
		if err == nil {
			l, udid, ifName, params, proto = t, t.Identifier, t.Interface, t.Params, t.Protocol
		}
	case discovery.SourceNCM, discovery.SourceRemotePairing:
		start := tunnel.StartRSD
		if path.Source == discovery.SourceRemotePairing {
			start = tunnel.StartRemotePairing
		}
		var t *tunnel.Tunnel
		t, err = start(ctx, path.Addr.String(), e.options(h, path.UDID))
		if errors.Is(err, tunnel.ErrNotPaired) && path.Source == discovery.SourceNCM {
			if perr := e.pairOverRSD(ctx, path.Addr.String(), path.UDID); perr != nil {
				err = &tunnel.Error{Device: path.UDID, Step: "pair", Err: perr}
			} else {
				h.ns = nil
				t, err = start(ctx, path.Addr.String(), e.options(h, path.UDID))
			}
		}
		if err == nil {
			l, udid, ifName, params, proto = t, t.Identifier, t.Interface, t.Params, t.Protocol
		}
	case discovery.SourceMobdev2:
		l, ifName, params, err = e.mobdev2(ctx, path, h)
		udid = path.UDID
	default:
		err = &tunnel.Error{Device: path.UDID, Step: "path", Err: fmt.Errorf("unknown source %q", path.Source)}
	}
	if err != nil {
		return nil, classify(path.UDID, err)
	}
	meta := &tunnelMeta{dial: h.dial}
	out := &link{Link: l}
	rsdAddr := netip.AddrPortFrom(params.ServerAddress, params.ServerRSDPort)
	switch {
	case e.advertiseFn != nil:
		// The advertised RSD reads the catalog itself (and is reached
		// without the tunnel): no session of our own, no userspace proxy.
		if err := e.advertise(ctx, udid, rsdAddr, h, l.Done(), meta); err != nil {
			l.Close()
			return nil, &tunnel.Error{Device: udid, Step: "advertise", Err: err}
		}
	default:
		e.readCatalog(ctx, h, udid, rsdAddr, meta)
		if e.userspace {
			// go-ios's clients reach every device port through one
			// 127.0.0.1 port of ours (userspaceTunPort).
			var ln net.Listener
			err := errors.New("no userspace stack")
			if h.ns != nil {
				ln, err = net.Listen("tcp", "127.0.0.1:0")
			}
			if err != nil {
				l.Close()
				return nil, &tunnel.Error{Device: udid, Step: "userspace proxy", Err: err}
			}
			out.proxy = utun.NewPreambleForwarder(ln, h.ns.DialContext, e.log)
			meta.userspacePort = uint16(ln.Addr().(*net.TCPAddr).Port)
			out.relay = e.relayLoopback(udid, rsdAddr, h, meta)
			meta.relay = out.relay
		}
	}
	return &tunnel.Established{UDID: udid, Interface: ifName, Params: params, Protocol: string(proto), Link: out, Meta: meta}, nil
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
	meta.services, meta.catalogAt = svcs, time.Now()
}

// coreDeviceProxy is P1 through usbmuxd. Like pymobiledevice3's tunneld
// (autopair on), a device without a pair record, or one that no longer
// trusts ours, is paired first (Trust dialog; the attempt timeout bounds
// it): lockdown.EnsurePaired, with the record folder as a second home for
// the record.
func (e *establisher) coreDeviceProxy(ctx context.Context, path discovery.Event, h *hostTUN) (*tunnel.Tunnel, error) {
	if e.mux == nil {
		return nil, &tunnel.Error{Device: path.UDID, Step: tunnel.StepUsbmux, Err: errors.New("usbmuxd monitor disabled")}
	}
	dev := usbmux.Device{DeviceID: path.DeviceID, SerialNumber: path.UDID, ConnectionType: path.ConnectionType, ProductID: path.ProductID}
	udid := dev.UDID()
	opt := lockdown.PairOptions{
		HostName: e.hostName,
		OnPrompt: func() {
			e.log.Info("tunneld: tap Trust on the iPhone (pairing over lockdown)", "udid", udid)
		},
	}
	if e.records.store.Dir != "" {
		opt.Store = e.records
	}
	_, paired, err := lockdown.EnsurePaired(ctx, e.mux, dev, opt)
	if err != nil {
		return nil, &tunnel.Error{Device: udid, Step: "pair", Err: err}
	}
	if paired {
		e.log.Info("tunneld: paired over lockdown", "udid", udid)
	}
	return tunnel.StartCoreDeviceProxy(ctx, e.mux, dev, e.options(h, udid))
}

// mobdev2 is P1 over Wi-Fi lockdown (discovery.md §5): TCP to lockdownd
// with our stored classic record, StartService CoreDeviceProxy, the
// service TLS on a second TCP connection, then CDTunnel and the pump.
func (e *establisher) mobdev2(ctx context.Context, path discovery.Event, h *hostTUN) (tunnel.Link, string, tunnel.Params, error) {
	udid := path.UDID
	fail := func(step string, err error) (tunnel.Link, string, tunnel.Params, error) {
		return nil, "", tunnel.Params{}, &tunnel.Error{Device: udid, Step: step, Err: err}
	}
	rec, err := e.records.load(udid)
	if err != nil {
		return fail("pair", fmt.Errorf("no lockdown pair record for Wi-Fi: %w", err))
	}
	d := net.Dialer{Timeout: 5 * time.Second, KeepAliveConfig: keepalive}
	host := path.Addr.Addr().String()
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(lockdown.Port))))
	if err != nil {
		return fail(tunnel.StepLockdown, err)
	}
	lc := lockdown.NewClient(nc, lockdown.ClientConfig{})
	defer lc.Close()
	if _, err := lc.StartSession(ctx, rec); err != nil {
		return fail(tunnel.StepLockdown, err)
	}
	info, err := lc.StartService(ctx, lockdown.CoreDeviceProxy, nil)
	if err != nil {
		return fail(tunnel.StepLockdown, err)
	}
	sc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(info.Port))))
	if err != nil {
		return fail(tunnel.StepLockdown, err)
	}
	conn, err := lockdown.ServiceTLS(ctx, sc, info, rec, 0)
	if err != nil {
		return fail(tunnel.StepLockdown, err)
	}
	var name string
	pump, params, err := tunnel.StartHost(ctx, conn, tunnel.HostConfig{
		NewTUN: func(p tunnel.Params) (tun.Device, error) {
			dev, err := h.newTUN(p)
			if err == nil {
				name, _ = dev.Name()
			}
			return dev, err
		},
		Logger: e.log,
	})
	if err != nil {
		return fail(tunnel.StepCDTunnel, err)
	}
	return pump, name, params, nil
}

// keepalive is tunnel.md §8.2's for direct TCP transports: idle 3 s,
// interval 3 s, 3 probes.
var keepalive = net.KeepAliveConfig{Enable: true, Idle: 3 * time.Second, Interval: 3 * time.Second, Count: 3}
