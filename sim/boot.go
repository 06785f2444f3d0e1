package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"

	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/xpc"
)

// boot is everything that lives from power-on to shutdown: the tunnel
// endpoint with the trusted RSD and its services, network pairing, and
// (while the cable is in) the plug with the USB surfaces. A reboot throws
// the whole boot away, so ports, RSD identity and BootSessionUUID are new.
type boot struct {
	*scope
	d     *Device
	wg    sync.WaitGroup
	conns *connSet

	session xpc.UUID // BootSessionUUID
	rsdUUID xpc.UUID // the device's RSD peer identity this boot
	props   *xpc.Dict
	tdev    *tunnel.Server
	ep      *establish.Server // the device side of every tunnel path
	trusted *rsdEndpoint
	netAddr string // network pairing host:port, "" if none
	wifi    *ncmLink

	mu   sync.Mutex
	plug *plug
}

// scope is a lifetime (a boot, a plug): its context ends the handlers it
// started, and close shuts its listeners before returning, so a port is
// refused the moment Unplug or Reboot returns.
type scope struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	lns    []io.Closer // listeners and sockets
	closed bool
}

func newScope(parent context.Context) *scope {
	sc := &scope{}
	sc.ctx, sc.cancel = context.WithCancel(parent)
	return sc
}

// add registers a listener or socket; false (and ln closed) when the scope
// has ended.
func (sc *scope) add(ln io.Closer) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.closed {
		ln.Close()
		return false
	}
	sc.lns = append(sc.lns, ln)
	return true
}

func (sc *scope) close() {
	sc.cancel()
	sc.mu.Lock()
	lns := sc.lns
	sc.lns, sc.closed = nil, true
	sc.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
}

// plug is what exists while the cable is in.
type plug struct {
	*scope
	ports    *usbmux.PortMux
	deviceID uint32
	rsdAddr  string // loopback untrusted RSD host:port
	ncm      *ncmLink
}

func (d *Device) newBoot() (_ *boot, err error) {
	b := &boot{d: d, conns: newConnSet(), scope: newScope(d.life)}
	defer func() {
		if err != nil {
			b.shutdown()
		}
	}()
	if b.session, err = xpc.NewRandomUUID(nil); err != nil {
		return nil, err
	}
	if b.rsdUUID, err = xpc.NewRandomUUID(nil); err != nil {
		return nil, err
	}
	b.props = rsdProperties(d.id, d.prof, b.session)
	rsdPort := randomPort()
	b.tdev, err = tunnel.NewServer(tunnel.ServerConfig{
		RSDPort: rsdPort,
		Faults: tunnel.Faults{DropAbove: d.cfg.Realism.DropAbove, DropAfter: d.cfg.Realism.DropAfter,
			Boundary: d.cfg.Realism.Boundary},
		Kernel: d.cfg.DeviceEnd == DeviceEndKernel,
		Logger: d.log,
	})
	if errors.Is(err, tunnel.ErrKernelNeedsRoot) {
		return nil, fmt.Errorf("sim: %s: device end %q: %w; run as root, or use the netstack device end", d.id.UDID, DeviceEndKernel, err)
	}
	if err != nil {
		return nil, err
	}
	b.ep, err = establish.NewServer(establish.ServerConfig{Tunnels: b.tdev, QUIC: d.prof.QUIC, Watch: d.watchSession,
		CipherSuites: d.cfg.Realism.TLSSuites, Logger: d.log})
	if err != nil {
		return nil, err
	}
	ln, err := b.tdev.ListenTCP(rsdPort)
	if err != nil {
		return nil, fmt.Errorf("trusted RSD: %w", err)
	}
	if !b.add(ln) {
		return nil, net.ErrClosed
	}
	listenTunnel := func(p uint16) (net.Listener, error) { return b.tdev.ListenTCP(p) }
	services, err := newServiceSet(b, b.scope, surfaceTunnel, trustedServices(d, d.cfg.Services), true, listenTunnel, rsdPort)
	if err != nil {
		return nil, err
	}
	b.trusted = &rsdEndpoint{d: d, name: "trusted rsd", uuid: b.rsdUUID, props: b.props, services: services,
		reattach: d.prof.PeerReattach, peers: map[string]*rsdPeer{}}
	b.accept(b.scope, ln, surfaceTunnel, b.trusted.serve)

	if addr := d.cfg.PairingAddr; addr != "" {
		ln, err := listenSticky(addr, &d.stickyPairing)
		if err != nil {
			return nil, fmt.Errorf("network pairing: %w", err)
		}
		b.netAddr = ln.Addr().String()
		if err := b.servePairing(ln, b.tunnelListen(b.scope, surfaceNet, hostPorts(hostOf(ln.Addr())))); err != nil {
			return nil, err
		}
	}
	if d.ncm != nil && d.ncm.cfg.WiFi {
		if b.wifi, err = d.ncm.upWiFi(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// listenSticky listens on addr; once a port has been chosen for it (addr
// with port 0), later boots ask for the same one, as a device keeps its
// well-known ports.
func listenSticky(addr string, sticky *string) (net.Listener, error) {
	if *sticky != "" {
		if ln, err := net.Listen("tcp", *sticky); err == nil {
			return ln, nil
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	*sticky = ln.Addr().String()
	return ln, nil
}

// servePairing serves RPPairing (network RemotePairing, remotepairing.md
// §1.3) on ln, a Wi-Fi surface of the boot; tunnel ports come from listen.
func (b *boot) servePairing(ln net.Listener, listen establish.Listen) error {
	pd, err := b.d.pairingDevice(b.createListener(listen))
	if err != nil {
		ln.Close()
		return err
	}
	b.accept(b.scope, ln, surfaceNet, func(ctx context.Context, c net.Conn) {
		t := pairing.NewRPPairing(c)
		if err := pd.Serve(ctx, t); err != nil {
			b.d.log.Debug("sim: network pairing", "udid", b.d.id.UDID, "err", err)
		}
	})
	return nil
}

// untrustedRSD serves the untrusted RSD on ln and its services on fresh
// ports from ports, all as surf within scope sc (a plug: USB).
func (b *boot) untrustedRSD(sc *scope, ln net.Listener, surf surface, ports portOpener) error {
	pd, err := b.d.pairingDevice(b.createListener(b.tunnelListen(sc, surf, ports)))
	if err != nil {
		ln.Close()
		return err
	}
	tunnelService := func(ctx context.Context, c net.Conn) {
		if err := pd.ServeXPC(ctx, c, nil); err != nil {
			b.d.log.Debug("sim: tunnel service", "udid", b.d.id.UDID, "err", err)
		}
	}
	services, err := newServiceSet(b, sc, surf, untrustedServices(b.d, tunnelService), false, ports.tcp)
	if err != nil {
		ln.Close()
		return err
	}
	ep := &rsdEndpoint{d: b.d, name: "untrusted rsd", uuid: b.rsdUUID, props: b.props, services: services}
	b.accept(sc, ln, surf, ep.serve)
	return nil
}

// plugIn attaches the USB surfaces. Caller holds the device's opMu. The
// plug is published before usbmuxd learns of the device, so lockdownd's
// StartService finds its port mux; its fields are set under b.mu.
func (b *boot) plugIn() (err error) {
	d := b.d
	p := &plug{scope: newScope(b.ctx)}
	if d.cfg.Mux != nil {
		p.ports = usbmux.NewPortMux(0)
		p.ports.Handle(lockdown.Port, d.ld.ServeConn)
	}
	b.mu.Lock()
	b.plug = p
	b.mu.Unlock()
	defer func() {
		if err != nil {
			b.unplug()
		}
	}()
	if addr := d.cfg.RSDAddr; addr != "" {
		ln, err := listenSticky(addr, &d.stickyRSD)
		if err != nil {
			return fmt.Errorf("untrusted RSD: %w", err)
		}
		b.mu.Lock()
		p.rsdAddr = ln.Addr().String()
		b.mu.Unlock()
		if err := b.untrustedRSD(p.scope, ln, surfaceUSB, hostPorts(hostOf(ln.Addr()))); err != nil {
			return err
		}
	}
	if d.ncm != nil {
		l, err := d.ncm.upNCM(b, p)
		if err != nil {
			return err
		}
		b.mu.Lock()
		p.ncm = l
		b.mu.Unlock()
	}
	if mux := d.cfg.Mux; mux != nil {
		serial := d.id.UDID
		if d.cfg.UndashedSerial {
			serial = undash(serial)
		}
		// Values as Linux usbmuxd reports an iPhone on a USB 2 port.
		id := mux.AddDevice(usbmux.DeviceEntry{
			SerialNumber: serial, USBSerialNumber: undash(d.id.UDID),
			ConnectionType: usbmux.ConnectionUSB, ConnectionSpeed: 480000000,
			ProductID: 0x12a8, LocationID: 0x14100000 + d.cfg.Index<<12,
		}, plugPorts{b: b, p: p})
		b.mu.Lock()
		p.deviceID = id
		b.mu.Unlock()
	}
	return nil
}

func undash(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			out = append(out, s[i])
		}
	}
	return string(out)
}

// unplug detaches the USB surfaces and drops every USB connection.
func (b *boot) unplug() {
	b.mu.Lock()
	p := b.plug
	b.plug = nil
	b.mu.Unlock()
	if p == nil {
		return
	}
	if p.deviceID != 0 {
		b.d.cfg.Mux.RemoveDevice(p.deviceID)
	}
	if p.ports != nil {
		p.ports.Close()
	}
	p.close()
	if p.ncm != nil {
		p.ncm.down()
	}
	b.conns.each(surfaceUSB, func(c *simConn) { c.reset() })
}

// shutdown ends the boot: every surface, connection and goroutine.
func (b *boot) shutdown() {
	b.unplug()
	b.close()
	if b.wifi != nil {
		b.wifi.down()
	}
	b.conns.closeAll()
	if b.ep != nil {
		b.ep.Close()
	}
	if b.tdev != nil {
		b.tdev.Close()
	}
	b.wg.Wait()
}

// accept serves every connection of ln with serve (each on its own
// goroutine, wrapped and tracked as surf) until the scope ends or ln fails.
func (b *boot) accept(sc *scope, ln net.Listener, surf surface, serve func(context.Context, net.Conn)) {
	if !sc.add(ln) {
		return
	}
	ctx := sc.ctx
	b.wg.Go(func() {
		defer ln.Close()
		for {
			nc, err := ln.Accept()
			if err != nil {
				if ctx.Err() == nil && !isClosed(err) {
					b.d.log.Warn("sim: accept", "udid", b.d.id.UDID, "addr", ln.Addr(), "err", err)
				}
				return
			}
			c, ok := b.wrap(nc, surf)
			if !ok {
				return
			}
			b.wg.Go(func() {
				defer c.Close()
				serve(ctx, c)
			})
		}
	})
}

func (b *boot) wrap(nc net.Conn, surf surface) (*simConn, bool) {
	var l *link
	if surf == surfaceUSB {
		l = b.d.link
	}
	return b.conns.wrap(nc, surf, &b.d.gate, l)
}

// createListener answers createListener through the tunnel endpoint, except
// QUIC on iOS 18.2 and later: there the device has no QUIC listener and a
// quic tunnel "fails at connect" (tunnel.md §1), so the device names a UDP
// port where nothing listens rather than refusing the request. Which of the
// two a real 18.2 device does is UNCONFIRMED; failing at connect is what
// pmd3's error mapping describes.
func (b *boot) createListener(listen establish.Listen) func(context.Context, string, pairing.ListenerRequest) (*pairing.Listener, error) {
	serve := b.ep.CreateListener(listen)
	if b.d.prof.QUIC {
		return serve
	}
	return func(ctx context.Context, host string, req pairing.ListenerRequest) (*pairing.Listener, error) {
		if req.Transport != pairing.TransportQUIC {
			return serve(ctx, host, req)
		}
		pc, err := listen.UDP()
		if err != nil {
			return nil, err
		}
		port := portOf(pc.LocalAddr())
		pc.Close()
		return &pairing.Listener{Port: int(port)}, nil
	}
}

// portOpener opens the device's ports on one surface: TCP (port 0: any)
// and UDP (any port, for QUIC tunnels).
type portOpener struct {
	tcp func(port uint16) (net.Listener, error)
	udp func() (net.PacketConn, error)
}

// hostPorts opens ports on an address of this host (loopback surfaces).
func hostPorts(host string) portOpener {
	return portOpener{
		tcp: func(port uint16) (net.Listener, error) {
			return net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
		},
		udp: func() (net.PacketConn, error) { return net.ListenPacket("udp", net.JoinHostPort(host, "0")) },
	}
}

// tunnelListen is where createListener opens tunnel ports on a surface:
// the listeners belong to sc (unplugging closes USB ones) and hand out
// tracked connections, so faults and the link rate apply to tunnels too.
// QUIC sockets are closed with sc but not shaped (datagrams).
func (b *boot) tunnelListen(sc *scope, surf surface, ports portOpener) establish.Listen {
	return establish.Listen{
		TCP: func() (net.Listener, error) {
			ln, err := ports.tcp(0)
			if err != nil {
				return nil, err
			}
			if !sc.add(ln) {
				return nil, net.ErrClosed
			}
			return trackedListener{Listener: ln, b: b, surf: surf}, nil
		},
		UDP: func() (net.PacketConn, error) {
			pc, err := ports.udp()
			if err != nil {
				return nil, err
			}
			if !sc.add(pc) {
				return nil, net.ErrClosed
			}
			return pc, nil
		},
	}
}

// trackedListener wraps every accepted connection as the device's own.
type trackedListener struct {
	net.Listener
	b    *boot
	surf surface
}

func (l trackedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c, ok := l.b.wrap(nc, l.surf)
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

// plugPorts is the device's usbmux PortHandler while plugged: it wraps each
// connection before handing it to lockdownd or a started service.
type plugPorts struct {
	b *boot
	p *plug
}

func (pp plugPorts) OpenPort(port uint16) (func(net.Conn), bool) {
	serve, ok := pp.p.ports.OpenPort(port)
	if !ok {
		return nil, false
	}
	return func(nc net.Conn) {
		c, ok := pp.b.wrap(nc, surfaceUSB)
		if !ok {
			return
		}
		defer c.Close()
		serve(c)
	}, true
}

// devicePorts opens lockdown service ports on the current plug's mux.
type devicePorts struct{ d *Device }

func (dp devicePorts) ListenOnce(serve func(net.Conn)) (uint16, error) {
	b := dp.d.currentBoot()
	if b == nil {
		return 0, net.ErrClosed
	}
	b.mu.Lock()
	p := b.plug
	b.mu.Unlock()
	if p == nil || p.ports == nil {
		return 0, net.ErrClosed
	}
	return p.ports.ListenOnce(serve)
}
