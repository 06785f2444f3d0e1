package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iosmux/iosmux/discovery/mdns"
	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
)

// Config configures a Backend.
type Config struct {
	// Listen is the RSD server's address, normally loopback: "[::1]:0",
	// "127.0.0.1:49300". Required. Service forwarders and the tunnel
	// service listen on the same host at ports of their own.
	Listen string
	// Untrusted, if set, is where the untrusted RSD is served (for
	// example "[::]:58783", the port go-ios dials on a USB-NCM link): a
	// Handshake with the device's Properties and only the backend's own
	// tunnel service, listening on the same host. Trusted services are
	// never reachable there; a client pairs and tunnels first.
	Untrusted string
	// Pairing, if set, is where RemotePairing is served with RPPairing
	// framing over TCP (network pairing, the _remotepairing._tcp path),
	// for example "[::]:0".
	Pairing string
	// MDNS names the interfaces on which the backend advertises itself
	// while a device is attached: _remotepairing._tcp for Pairing and
	// _remoted._tcp for Untrusted (the adverts the simulator and a real
	// iPhone send).
	MDNS []string
	// Advertise is the address clients are told to use (Addr, the APIs'
	// listing) when Listen is a wildcard (:: or 0.0.0.0), which is no
	// address a client can dial; zero picks this host's first global
	// unicast address of that family (IPv4 for ::, when there is no IPv6
	// one), else loopback.
	Advertise netip.Addr
	// AllowClients, when not empty, restricts every listener of the
	// backend (RSD, tunnel service, forwarders, untrusted RSD, pairing)
	// to clients whose address lies in one of these prefixes; loopback
	// clients are always allowed. Nothing else authenticates a client of
	// the trusted RSD.
	AllowClients []netip.Prefix

	// StateDir keeps the backend's own pairing identity per device and
	// the hosts paired with it, in files of mode 0600. Required.
	StateDir string
	// HostUUID is this host's stable RSD identity
	// (rsd.LoadOrCreateHostUUID), presented to the device on the one
	// discovery session per tunnel. Required: a changing identity makes
	// iOS 27.2 close every advertised service port.
	HostUUID xpc.UUID
	// HostName is the name the backend gives itself when it reads the
	// device's pairing handshake; "" means "iosmux-backend".
	HostName string
	// Consent decides a client's pair-setup (the device's Trust dialog);
	// nil accepts every client, as remotepairing.md §9.7 has the proxy
	// do. Anyone who can reach Listen, Untrusted or Pairing can then pair
	// and reach the device.
	Consent func(ctx context.Context, hostName string) (bool, error)

	// WireLog, if set, receives every frame and XPC message of every
	// connection the backend serves or opens.
	WireLog *WireLog
	// DiscoveryTimeout bounds one read of the device's Handshake; 0 means
	// 15 s.
	DiscoveryTimeout time.Duration
	// Rand supplies random bytes (UUIDs, keys); nil means crypto/rand.
	Rand io.Reader
	// Logger receives attach, reboot and per-connection events; nil
	// discards.
	Logger *slog.Logger
}

// DeviceTunnel is the device's tunnel as the backend reaches it.
type DeviceTunnel struct {
	// RSD is the device's trusted RSD inside the tunnel: CDTunnel's
	// serverAddress and serverRSDPort.
	RSD netip.AddrPort
	// Dial opens TCP connections through the tunnel: a net.Dialer's
	// DialContext for a kernel TUN, utun.Netstack.DialContext for a
	// userspace one.
	Dial utun.DialFunc
	// Done, if not nil, is closed when the tunnel has ended; the backend
	// then detaches from it.
	Done <-chan struct{}
}

// Backend plays the device towards RemoteXPC clients (CoreDeviceService,
// go-ios, appium) and delegates everything to the real device through its
// tunnel. Its methods are safe for concurrent use.
type Backend struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	host    netip.Addr   // where forwarders and the tunnel service listen
	public  netip.Addr   // what clients are told: host, or a concrete one for a wildcard
	refused atomic.Int64 // unix nanoseconds of the last refusal logged
	rsdLn   net.Listener
	rsdPort uint16
	tsLn    net.Listener // the tunnel service next to the RSD
	tsPort  uint16
	utLn    net.Listener // untrusted RSD, or nil
	utTSLn  net.Listener // its tunnel service, or nil
	pairLn  net.Listener // RPPairing, or nil

	mu       sync.Mutex
	closed   bool
	link     *linkState
	boot     *boot
	lastBoot bootKey  // survives detach, so the same boot keeps its UUID
	lastUUID xpc.UUID // our UUID for lastBoot
	view     *view
	fwds     map[string]*forward // by service name; ports stable for the backend's life
	fwdPorts map[uint16]string
	pair     *pairState
	mdns     []*mdns.Responder

	closeOnce sync.Once
}

// DefaultHostName is the name the backend uses towards the device.
const DefaultHostName = "iosmux-backend"

// New opens the backend's listeners and starts serving. Until a device is
// attached, RSD connections are accepted and closed at once: there is no
// device state to describe.
func New(cfg Config) (*Backend, error) {
	if cfg.Listen == "" {
		return nil, errors.New("backend: Config.Listen is required")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("backend: Config.StateDir is required")
	}
	if cfg.HostUUID.IsZero() {
		return nil, errors.New("backend: Config.HostUUID is required (rsd.LoadOrCreateHostUUID)")
	}
	if cfg.HostName == "" {
		cfg.HostName = DefaultHostName
	}
	if cfg.DiscoveryTimeout <= 0 {
		cfg.DiscoveryTimeout = 15 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{cfg: cfg, log: log, fwds: map[string]*forward{}, fwdPorts: map[uint16]string{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	var err error
	if b.rsdLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("backend: RSD listener: %w", err)
	}
	ap := b.rsdLn.Addr().(*net.TCPAddr).AddrPort()
	b.host, b.rsdPort = ap.Addr().Unmap(), ap.Port()
	if b.public, err = publicAddr(b.host, cfg.Advertise); err != nil {
		return nil, err
	}
	if b.tsLn, err = b.listenHost(b.host); err != nil {
		return nil, fmt.Errorf("backend: tunnel service listener: %w", err)
	}
	b.tsPort = portOf(b.tsLn.Addr())
	if cfg.Untrusted != "" {
		if b.utLn, err = net.Listen("tcp", cfg.Untrusted); err != nil {
			return nil, fmt.Errorf("backend: untrusted RSD listener: %w", err)
		}
		if b.utTSLn, err = net.Listen("tcp", hostPort(b.utLn.Addr(), 0)); err != nil {
			return nil, fmt.Errorf("backend: untrusted tunnel service listener: %w", err)
		}
	}
	if cfg.Pairing != "" {
		if b.pairLn, err = net.Listen("tcp", cfg.Pairing); err != nil {
			return nil, fmt.Errorf("backend: network pairing listener: %w", err)
		}
	}
	b.goAccept(b.rsdLn, b.serveRSD)
	b.goAccept(b.tsLn, b.serveTunnelService)
	if b.utLn != nil {
		b.goAccept(b.utLn, b.serveUntrustedRSD)
		b.goAccept(b.utTSLn, b.serveTunnelService)
	}
	if b.pairLn != nil {
		b.goAccept(b.pairLn, b.serveNetworkPairing)
	}
	ok = true
	return b, nil
}

// listenHost opens a listener on host at a fresh port.
func (b *Backend) listenHost(host netip.Addr) (net.Listener, error) {
	return net.Listen("tcp", netip.AddrPortFrom(host, 0).String())
}

// hostPort is a's host with another port, zone kept.
func hostPort(a net.Addr, port int) string {
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		h = a.String()
	}
	return net.JoinHostPort(h, strconv.Itoa(port))
}

func portOf(a net.Addr) uint16 {
	if ta, ok := a.(*net.TCPAddr); ok {
		return uint16(ta.Port)
	}
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return uint16(n)
}

// goAccept accepts on ln until it is closed and hands every conn to serve
// in a goroutine the backend waits for. It reports false (and starts
// nothing) when the backend is closing.
func (b *Backend) goAccept(ln net.Listener, serve func(net.Conn)) bool {
	return b.goTracked(func() {
		// Out of descriptors and the like: wait and go on, so a burst
		// of clients does not kill a port for good.
		wait := retry.Backoff{Min: 20 * time.Millisecond, Max: time.Second, Jitter: -1}
		for {
			c, err := ln.Accept()
			if err != nil {
				if b.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return
				}
				b.log.Warn("backend: accept failed", "listen", ln.Addr().String(), "err", err)
				t := time.NewTimer(wait.Next())
				select {
				case <-t.C:
				case <-b.ctx.Done():
					t.Stop()
					return
				}
				continue
			}
			wait.Reset()
			if !b.allowed(c) {
				c.Close()
				continue
			}
			if !b.goTracked(func() { serve(c) }) {
				c.Close()
				return
			}
		}
	})
}

// goTracked runs f in a goroutine Close waits for, unless the backend is
// closing.
func (b *Backend) goTracked(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Go(f)
	return true
}

// Addr is the RSD server's address: what to give CoreDeviceService (or
// list in the tunneld API) instead of the device's tunnel RSD. It is
// never a wildcard (see Config.Advertise).
func (b *Backend) Addr() netip.AddrPort {
	return netip.AddrPortFrom(b.public, b.rsdPort)
}

// UntrustedAddr is the untrusted RSD's address, if served, as clients
// reach it (a concrete address for a wildcard listener).
func (b *Backend) UntrustedAddr() net.Addr {
	if b.utLn == nil {
		return nil
	}
	return b.reachable(b.utLn.Addr())
}

// PairingAddr is the network pairing address, if served, as clients
// reach it.
func (b *Backend) PairingAddr() net.Addr {
	if b.pairLn == nil {
		return nil
	}
	return b.reachable(b.pairLn.Addr())
}

// Exposed reports whether any listener takes clients from beyond this
// host (not loopback): the command warns then.
func (b *Backend) Exposed() bool {
	for _, ln := range []net.Listener{b.rsdLn, b.utLn, b.pairLn} {
		if ln == nil {
			continue
		}
		if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.AddrPort().Addr().Unmap().IsLoopback() {
			return true
		}
	}
	return false
}

// Handshake returns the Handshake clients get now, or nil while no device
// is attached.
func (b *Backend) Handshake() *rsd.Handshake {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.view == nil {
		return nil
	}
	h, err := rsd.ParseHandshake(b.view.server.HandshakeBody())
	if err != nil {
		return nil
	}
	return h
}

// DeviceHandshake returns the device's own Handshake as last read, or nil.
func (b *Backend) DeviceHandshake() *rsd.Handshake {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.view == nil {
		return nil
	}
	return b.view.device
}

// Close stops every listener, detaches from the device, ends every client
// connection and tunnel, and returns once all goroutines have exited. It is
// idempotent.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		ls, bt := b.link, b.boot
		b.link, b.boot, b.view = nil, nil, nil
		fwds := b.fwds
		responders := b.mdns
		b.mdns = nil
		b.mu.Unlock()
		b.cancel()
		for _, ln := range []net.Listener{b.rsdLn, b.tsLn, b.utLn, b.utTSLn, b.pairLn} {
			if ln != nil {
				ln.Close()
			}
		}
		for _, f := range fwds {
			f.ln.Close()
		}
		if ls != nil {
			ls.cancel()
		}
		if bt != nil {
			bt.close()
		}
		for _, r := range responders {
			r.Close()
		}
	})
	b.wg.Wait()
	return nil
}
