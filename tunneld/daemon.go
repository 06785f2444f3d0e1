package tunneld

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/xpc"
	"golang.zx2c4.com/wireguard/tun"
)

// API names for Config.APIs.
const (
	APIPMD3   = "pmd3"
	APIGoIOS  = "goios"
	APIAppium = "appium"
)

// DefaultHost is where the APIs listen unless told otherwise: loopback
// only, as pymobiledevice3's tunneld.
const DefaultHost = "127.0.0.1"

// Config configures a Daemon. The zero value serves the pymobiledevice3
// API on 127.0.0.1:49151 and watches nothing.
type Config struct {
	// Host and Port of the pymobiledevice3 API; GoIOSPort and AppiumPort
	// of the other two, each served only when named in APIs (default
	// just pmd3). Port 0 means the API's default port; -1 lets the
	// kernel choose (tests).
	Host                        string
	Port, GoIOSPort, AppiumPort int
	APIs                        []string
	// AllowedHosts are extra Host header names the APIs accept besides IP
	// literals and localhost (the --host name).
	AllowedHosts []string
	// Listen opens the API listeners; nil means net.Listen.
	Listen func(network, address string) (net.Listener, error)
	// ListenLoopback opens the userspace tunnels' listeners at their
	// loopback addresses (loopback.go); nil means net.Listen. Tests use it
	// to play a system without loopback aliases.
	ListenLoopback func(network, address string) (net.Listener, error)

	// Usbmux is usbmuxd: its Listen monitor and the P1 path. nil disables
	// both.
	Usbmux *usbmux.Client
	// USB, WiFi and Mobdev2 switch pymobiledevice3's other monitors on:
	// USB-NCM (_remoted._tcp), _remotepairing._tcp and
	// _apple-mobdev2._tcp.
	USB, WiFi, Mobdev2 bool
	// Monitors are added to those (tests, other sources).
	Monitors []discovery.Monitor

	// Protocol is the RemotePairing tunnel transport (P2/P3); "" is TCP.
	Protocol establish.Protocol
	// Userspace serves each tunnel from a userspace network stack (no
	// root; reachable through go-ios's userspace proxy) instead of a
	// kernel TUN.
	Userspace bool
	// NewKernelTUN creates kernel TUNs; nil means tunnel.KernelTUN("").
	// KernelDial reaches devices through them (the RSD catalog); nil
	// means a net.Dialer. Tests run both inside a network namespace.
	NewKernelTUN func(tunnel.Params) (tun.Device, error)
	KernelDial   func(ctx context.Context, network, address string) (net.Conn, error)
	// Records is the pair record folder (pymobiledevice3's
	// ~/.pymobiledevice3): RemotePairing records and, written on lockdown
	// autopair, classic ones.
	Records pairing.RecordStore
	// HostName is this host's name in pairing dialogs; "" is the OS host
	// name. HostUUID is this host's one stable RSD identity
	// (rsd.LoadOrCreateHostUUID), presented on every RSD session: to
	// untrusted RSDs (P2), as pymobiledevice3 does, and to the trusted
	// RSD when the catalog is read (iOS 27.2 closes every service port
	// when a tunnel's peer presents another UUID). Zero presents none.
	HostName string
	HostUUID xpc.UUID

	// Establish brings each tunnel up; nil means establish.Establish
	// (tests watch it; the command passes its own, which is that).
	Establish func(context.Context, discovery.Event, establish.Options) (*establish.Tunnel, error)

	// Backoff, AttemptTimeout and CancelHold tune the manager
	// (managerConfig).
	Backoff        retry.Backoff
	AttemptTimeout time.Duration
	CancelHold     time.Duration

	// Advertise, if set, is asked what to list in place of each tunnel's
	// trusted RSD (iosmux tunneld --advertise backend): it is called once
	// the tunnel is up, before it is listed, and the APIs then list the
	// Advert's address, port and services. No catalog session of the
	// daemon's own is opened then. An error fails the attempt (the
	// manager tries again): a client promised the advertised RSD must
	// not be handed the device's.
	Advertise func(ctx context.Context, t AdvertiseRequest) (Advert, error)

	// OnTunnel, if set, is told of every tunnel that comes up or goes
	// away (the CLI prints them). It is called from one goroutine at a
	// time and must not block.
	OnTunnel func(up bool, t rsdapi.Tunnel)
	// OnReady, if set, is called once Run serves the APIs (systemd's
	// READY=1, a daemonizing parent waiting for its child).
	OnReady func()

	Logger *slog.Logger
}

// Daemon is a running tunneld: discovery, the tunnel manager and the HTTP
// APIs.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	est     *establisher
	mgr     *manager
	api     *rsdapi.Server
	dm      *daemonMetrics
	sync    *metricsSync
	reg     *registry
	started time.Time

	listeners map[string]net.Listener // by API name
	servers   []*http.Server

	shutdownOnce sync.Once
	shutdownReq  chan struct{}
}

// New validates cfg and opens the API listeners, so that a busy port
// fails here, before anything runs.
func New(cfg Config) (*Daemon, error) {
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if len(cfg.APIs) == 0 {
		cfg.APIs = []string{APIPMD3}
	}
	if cfg.Listen == nil {
		cfg.Listen = net.Listen
	}
	if cfg.Protocol == "" {
		cfg.Protocol = establish.TCP
	}
	if cfg.Protocol != establish.TCP && cfg.Protocol != establish.QUIC {
		return nil, fmt.Errorf("tunneld: protocol %q: want tcp or quic", cfg.Protocol)
	}
	if cfg.HostName == "" {
		cfg.HostName, _ = os.Hostname()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{cfg: cfg, log: log, listeners: map[string]net.Listener{}, shutdownReq: make(chan struct{})}
	ports := map[string]int{APIPMD3: cfg.Port, APIGoIOS: cfg.GoIOSPort, APIAppium: cfg.AppiumPort}
	defaults := map[string]int{APIPMD3: rsdapi.DefaultPMD3Port, APIGoIOS: rsdapi.DefaultGoIOSPort, APIAppium: rsdapi.DefaultAppiumPort}
	for _, api := range cfg.APIs {
		def, ok := defaults[api]
		if !ok {
			d.closeListeners()
			return nil, fmt.Errorf("tunneld: unknown API %q: want %s, %s or %s", api, APIPMD3, APIGoIOS, APIAppium)
		}
		if _, dup := d.listeners[api]; dup {
			continue
		}
		port := ports[api]
		switch {
		case port == 0:
			port = def
		case port < 0:
			port = 0
		}
		addr := rsdapi.ListenAddr(cfg.Host, port)
		ln, err := cfg.Listen(listenNetwork(cfg.Host), addr)
		if err != nil {
			d.closeListeners()
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("tunneld: %s API: %w: another tunneld is probably running on %d (curl http://%s/hello); stop it, or choose another --port", api, err, port, addr)
			}
			return nil, fmt.Errorf("tunneld: %s API: %w", api, err)
		}
		d.listeners[api] = ln
	}

	newKernel := cfg.NewKernelTUN
	if newKernel == nil {
		newKernel = tunnel.KernelTUN("")
	}
	kdial := cfg.KernelDial
	if kdial == nil {
		var nd net.Dialer
		kdial = nd.DialContext
	}
	d.est = &establisher{
		mux: cfg.Usbmux, records: classicRecords{store: cfg.Records}, store: cfg.Records,
		hostName: cfg.HostName, hostUUID: cfg.HostUUID, protocol: cfg.Protocol, userspace: cfg.Userspace,
		newKernelTUN: newKernel, kernelDial: kdial, catalogWait: 5 * time.Second, advertiseFn: cfg.Advertise, log: log,
		loopback: newLoopbackPool(cfg.ListenLoopback, log), establish: cfg.Establish,
	}
	if d.est.establish == nil {
		d.est.establish = establish.Establish
	}
	d.dm = newDaemonMetrics()
	d.reg = &registry{d: d}
	d.api = rsdapi.New(rsdapi.Config{
		Registry: d.reg, Logger: log, Metrics: d.dm.handler(), OnRequest: d.dm.request,
		AllowedHosts: cfg.AllowedHosts,
	})
	d.sync = newMetricsSync(d.dm, cfg.OnTunnel)
	return d, nil
}

// listenNetwork binds an IPv4 literal (0.0.0.0 included) on IPv4 only, as
// pymobiledevice3 does: Go would otherwise open "0.0.0.0" on every IPv6
// address too. An IPv6 literal binds IPv6; a name, what it resolves to.
func listenNetwork(host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is4() {
			return "tcp4"
		}
		return "tcp6"
	}
	return "tcp"
}

// Close releases the API listeners of a daemon whose Run was never
// called (Run closes them itself).
func (d *Daemon) Close() error {
	if d.mgr == nil {
		d.closeListeners()
	}
	return nil
}

func (d *Daemon) closeListeners() {
	for _, ln := range d.listeners {
		ln.Close()
	}
}

// Addr returns where an API listens ("" if it is not served).
func (d *Daemon) Addr(api string) string {
	if ln, ok := d.listeners[api]; ok {
		return ln.Addr().String()
	}
	return ""
}

// Tunnels lists the established tunnels as the APIs see them.
func (d *Daemon) Tunnels() []rsdapi.Tunnel { return d.reg.Tunnels() }

// Shutdown asks Run to stop (the APIs' /shutdown); it does not wait.
func (d *Daemon) Shutdown() {
	d.shutdownOnce.Do(func() { close(d.shutdownReq) })
}

// Run serves until ctx ends or Shutdown is called, then stops discovery,
// the APIs and every tunnel (their TUNs are removed) and returns once all
// of it has exited. It returns nil after a requested stop.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	if d.cfg.Protocol == establish.QUIC {
		establish.PrepareQUIC() // the first tunnel's RSA key, made before any device shows up
	}
	d.mgr = newManager(managerConfig{
		Establisher: d.est, Backoff: d.cfg.Backoff, AttemptTimeout: d.cfg.AttemptTimeout,
		CancelHold: d.cfg.CancelHold, Logger: d.log,
		OnChange: func() {
			d.api.Notify()
			d.sync.changed(d.reg.Tunnels())
			d.sync.stats(d.mgr.Stats())
		},
		OnSetUp: d.dm.observeSetUp,
	})

	var wg sync.WaitGroup
	serveErr := make(chan error, len(d.listeners))
	for _, api := range slices.Sorted(maps.Keys(d.listeners)) {
		ln := d.listeners[api]
		var h http.Handler
		switch api {
		case APIPMD3:
			h = d.api.PMD3Handler()
		case APIGoIOS:
			h = d.api.GoIOSHandler()
		case APIAppium:
			h = d.api.AppiumHandler()
		}
		srv := rsdapi.NewHTTPServer(ln.Addr().String(), h, d.log)
		d.servers = append(d.servers, srv)
		d.log.Info("tunneld: API listening", "api", api, "addr", "http://"+ln.Addr().String())
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("tunneld: %s API: %w", api, err)
			}
		})
	}

	if d.cfg.OnReady != nil {
		d.cfg.OnReady()
	}

	dctx, stopDiscovery := context.WithCancel(context.Background())
	monitors := d.monitors()
	var discoveryDone sync.WaitGroup
	discoveryDone.Go(func() { discovery.Run(dctx, d.log, d.mgr.Apply, monitors...) })
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				d.sync.stats(d.mgr.Stats())
			case <-dctx.Done():
				return
			}
		}
	})

	var err error
	select {
	case <-ctx.Done():
		d.log.Info("tunneld: stopping", "reason", context.Cause(ctx))
	case <-d.shutdownReq:
		d.log.Info("tunneld: stopping", "reason", "shutdown requested")
	case err = <-serveErr:
		d.log.Error("tunneld: stopping", "err", err)
	}

	// Discovery first (no new tunnels), then the APIs (replies in flight,
	// such as /shutdown's, are finished), then every tunnel.
	stopDiscovery()
	discoveryDone.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	for _, srv := range d.servers {
		srv.Shutdown(sctx)
	}
	cancel()
	d.mgr.Close()
	for _, srv := range d.servers {
		srv.Close()
	}
	wg.Wait()
	d.sync.stats(d.mgr.Stats())
	d.log.Info("tunneld: stopped")
	return err
}

// monitors builds the discovery sources the switches ask for.
func (d *Daemon) monitors() []discovery.Monitor {
	var ms []discovery.Monitor
	if d.cfg.Usbmux != nil {
		ms = append(ms, discovery.NewUsbmuxMonitor(d.cfg.Usbmux))
	}
	if d.cfg.USB {
		ms = append(ms, &discovery.NCMMonitor{Identify: d.est.identifyNCM, Logger: d.log})
	}
	if d.cfg.WiFi {
		m := discovery.NewWiFiMonitor()
		m.Identify, m.Logger = d.est.identifyWiFi, d.log
		ms = append(ms, m)
	}
	if d.cfg.Mobdev2 {
		m := discovery.NewMobdev2Monitor()
		m.Identify, m.Logger = d.est.identifyMobdev2, d.log
		ms = append(ms, m)
	}
	return append(ms, d.cfg.Monitors...)
}
