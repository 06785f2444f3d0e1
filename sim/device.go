package sim

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
)

// Config describes one simulated iPhone.
type Config struct {
	// Index and Seed derive the identity (DeriveIdentity); Seed "" means
	// DefaultSeed. Identity, if set, is used instead.
	Index    int
	Seed     string
	Identity *Identity
	// Profile is the iOS release; the zero value means DefaultProfile.
	Profile Profile
	// StateDir keeps identity, keys and pairings across restarts; "" keeps
	// nothing (identity is still deterministic, pairings are not).
	StateDir string
	// LockdownKey is the lockdown device key; nil loads it from StateDir
	// or generates one (slow: prefer sharing one key in tests).
	LockdownKey *rsa.PrivateKey

	// Mux is the simulated usbmuxd the device plugs into; nil leaves the
	// device off usbmux (no lockdown, no CoreDeviceProxy).
	Mux *usbmux.Server
	// UndashedSerial reports the 24-digit UDID without its dash in
	// usbmuxd's SerialNumber, as Linux usbmuxd does.
	UndashedSerial bool
	// RSDAddr is where the untrusted RSD and its services listen on
	// loopback TCP, e.g. "127.0.0.1:0" (the port of RSD itself; services get
	// their own); "" disables it. It stands in for USB-NCM, so unplugging
	// closes it.
	RSDAddr string
	// PairingAddr is where network RemotePairing (RPPairing over TCP)
	// listens, e.g. "127.0.0.1:0"; "" disables it. Unplugging leaves it.
	PairingAddr string
	// NCM emulates the USB-Ethernet link in a network namespace of the
	// device's own (Linux, root); nil disables it.
	NCM *NCMConfig

	Realism Realism
	// DeviceEnd carries the device's end of its tunnels; "" means
	// DeviceEndNetstack.
	DeviceEnd DeviceEnd
	// Trust is the initial answer to pairing requests (lockdown Pair and
	// RemotePairing pair-setup); the zero value accepts.
	Trust Trust
	// Services are added to (or replace by name) the trusted RSD's table.
	Services []DeviceService

	// DeveloperMode starts a new device (no stored state) with Developer
	// Mode on; otherwise it starts off, as a new iPhone does.
	DeveloperMode bool
	// Passcode makes the device refuse to arm Developer Mode.
	Passcode bool
	// SeedManifests are DDI folders whose image the device keeps a
	// manifest for from the start, so mounts take the offline branch
	// without a signing server (--seed-manifest).
	SeedManifests []string
	// RebootDown is how long arming Developer Mode keeps the device down;
	// 0 means DefaultRebootDown.
	RebootDown time.Duration

	// LogRate is the device log's background chatter in lines per second
	// (0: only the device's own events); Logs().SetRate changes it.
	LogRate float64
	// Logger receives lifecycle and fault logs; nil discards.
	Logger *slog.Logger
}

// Realism makes the device as awkward as a real one (tunnel.md §3.1).
type Realism struct {
	// DropAbove drops host→device tunnel packets longer than this many
	// bytes once DropAfter bytes have passed (pmd3 saw USB
	// CoreDeviceProxy drop packets over 8 KiB under sustained load).
	DropAbove int
	DropAfter int64
	// Boundary makes the device read its tunnel transport one packet per
	// read, as CoreDeviceProxy's forwarder does.
	Boundary tunnel.BoundaryMode
	// LinkRate caps every USB connection of the device together, in bytes
	// per second per direction (USB 2 ≈ 40 MB/s); 0 means no cap.
	LinkRate int64
	// TLSSuites is the TLS-PSK tunnel server's suite preference (SIM:
	// tlspsk.md §3.3); nil means tlspsk.DefaultServerSuites, the AEAD
	// suites first. TLSSuitesCBC stands in for a device preferring CBC.
	TLSSuites []uint16
}

// DeviceEnd is what carries a device's end of its tunnels: the trusted
// RSD and every service listed there listen on it.
type DeviceEnd string

const (
	// DeviceEndNetstack is a userspace TCP/IP stack (gVisor) in this
	// process per device: any OS, no privileges, a TCP stack other than
	// the host's, as a real iPhone has. The default.
	DeviceEndNetstack DeviceEnd = "netstack"
	// DeviceEndKernel puts each device's tunnel address in a network
	// namespace of its own with a kernel TUN per tunnel, and its services
	// on kernel sockets there (Linux, root): several times cheaper per
	// byte, so a benchmark through the simulator measures the host.
	DeviceEndKernel DeviceEnd = "kernel"
)

// DeviceEnds lists the device ends, the default first.
var DeviceEnds = []string{string(DeviceEndNetstack), string(DeviceEndKernel)}

// ParseDeviceEnd reads "netstack" or "kernel" ("" is netstack).
func ParseDeviceEnd(s string) (DeviceEnd, error) {
	switch DeviceEnd(s) {
	case "", DeviceEndNetstack:
		return DeviceEndNetstack, nil
	case DeviceEndKernel:
		return DeviceEndKernel, nil
	}
	return "", fmt.Errorf("sim: device end %q: want netstack or kernel", s)
}

// USB2 is the realism of a USB 2 iPhone under load.
var USB2 = Realism{DropAbove: 8192, DropAfter: 4 << 20, Boundary: tunnel.BoundaryDrop, LinkRate: 40_000_000}

// Trust is the simulated user's answer to a Trust dialog.
type Trust int32

const (
	TrustAccept  Trust = iota // taps Trust
	TrustDeny                 // taps Don't Trust
	TrustPending              // never answers while pending
	// TrustLocked: locked with a passcode. Lockdown's Pair answers
	// PasswordProtected; RemotePairing's consent waits as if pending (a
	// real device shows its dialog once unlocked; SIM: what it sends
	// while locked is not documented).
	TrustLocked
)

func (t Trust) String() string {
	switch t {
	case TrustAccept:
		return "accept"
	case TrustDeny:
		return "deny"
	case TrustPending:
		return "pending"
	case TrustLocked:
		return "locked"
	}
	return fmt.Sprintf("Trust(%d)", int32(t))
}

// ParseTrust reads "accept", "deny", "pending" or "locked".
func ParseTrust(s string) (Trust, error) {
	for _, t := range []Trust{TrustAccept, TrustDeny, TrustPending, TrustLocked} {
		if strings.EqualFold(s, t.String()) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("sim: trust %q: want accept, deny, pending or locked", s)
}

// State is where a device is in its life.
type State int

const (
	StatePlugged   State = iota // booted and on the cable
	StateUnplugged              // booted, cable out
	StateDown                   // rebooting
	StateClosed
)

func (s State) String() string {
	return [...]string{"plugged", "unplugged", "down", "closed"}[s]
}

// Device is one simulated iPhone. It starts booted and plugged in; its
// methods are safe for concurrent use. Lifecycle changes (Unplug, Replug,
// Reboot, Close) are serialised.
type Device struct {
	cfg     Config
	id      Identity
	prof    Profile
	log     *slog.Logger
	state   stateDir
	values  map[string]any
	domains map[string]map[string]any

	ld    *lockdown.Server
	dev   *developer   // Developer Mode and the mounter
	files *appStore    // AFC's tree and the installed apps (apps.go)
	diag  *diagnostics // processes, log, notifications, crash folder
	core  *coreDevice  // CoreDevice services and the debugserver (coredevice.go)
	hosts *hostStore
	gate  faultGate
	link  *link
	trust atomic.Int32
	ncm   *ncmHost // nil without NCM
	stats stats
	// dialogShowing: lockdown's Trust dialog is up (the last Pair was
	// answered pending).
	dialogShowing atomic.Bool

	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // reboot timers

	opMu    sync.Mutex // serialises lifecycle operations
	mu      sync.Mutex
	boot    *boot // nil while down
	st      State
	changed chan struct{} // closed and replaced on every state change
	plugged bool          // whether the cable is in (kept across reboots)

	// Ports chosen for RSDAddr and PairingAddr by the first boot, asked
	// for again by later ones (under opMu).
	stickyRSD, stickyPairing string
}

type stats struct {
	boots, pairSetups, verifies, sessions, reattaches, trustPrompts atomic.Int64

	mu    sync.Mutex
	live  map[*tunnel.Session]struct{}
	ended tunnel.SessionStats // totals of ended sessions
}

// watchSession counts a tunnel session while it runs and adds its
// counters to the totals when it ends.
func (d *Device) watchSession(s *tunnel.Session) func() {
	d.stats.sessions.Add(1)
	p := s.Params()
	d.diag.log("remoted", LogDefault, fmt.Sprintf("tunnel up: device %s, host %s, MTU %d", p.ServerAddress, p.ClientAddress, p.MTU))
	d.stats.mu.Lock()
	if d.stats.live == nil {
		d.stats.live = map[*tunnel.Session]struct{}{}
	}
	d.stats.live[s] = struct{}{}
	d.stats.mu.Unlock()
	return func() {
		<-s.Done()
		st := s.Stats()
		d.log.Debug("sim: tunnel session ended", "udid", d.id.UDID, "params", s.Params(), "stats", st, "err", s.Err())
		d.stats.mu.Lock()
		delete(d.stats.live, s)
		addSessionStats(&d.stats.ended, st)
		d.stats.mu.Unlock()
	}
}

func addSessionStats(dst *tunnel.SessionStats, s tunnel.SessionStats) {
	dst.DroppedAbove += s.DroppedAbove
	dst.BoundaryViolations += s.BoundaryViolations
}

// tunnelStats sums the fault counters of every session so far.
func (d *Device) tunnelStats() tunnel.SessionStats {
	d.stats.mu.Lock()
	defer d.stats.mu.Unlock()
	total := d.stats.ended
	for s := range d.stats.live {
		addSessionStats(&total, s.Stats())
	}
	return total
}

// Stats counts what a device has done since New.
type Stats struct {
	Boots      int64 `json:"boots"`
	PairSetups int64 `json:"pairSetups"` // RemotePairing pair-setups completed
	// TrustPrompts counts the Trust dialogs shown: lockdown Pair requests
	// from an unknown host and RemotePairing consents asked, whatever
	// the answer (a pending dialog polled again is not a new one).
	TrustPrompts int64 `json:"trustPrompts"`
	Verifies     int64 `json:"verifies"`    // RemotePairing pair-verifies completed
	Sessions     int64 `json:"sessions"`    // tunnel sessions started
	Reattaches   int64 `json:"reattaches"`  // iOS 27.2 service moves
	Connections  int   `json:"connections"` // live connections now
	// Realism at work in tunnels: host→device packets dropped for their
	// size, and transport reads that were not exactly one packet.
	DroppedAbove       uint64 `json:"droppedAbove"`
	BoundaryViolations uint64 `json:"boundaryViolations"`
}

// New builds a device and boots it. It fails if its state directory is
// unreadable or a surface cannot listen.
func New(cfg Config) (*Device, error) {
	if cfg.Profile.Name == "" {
		cfg.Profile = MustProfile(DefaultProfile)
	}
	if cfg.Seed == "" {
		cfg.Seed = DefaultSeed
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := ParseDeviceEnd(string(cfg.DeviceEnd)); err != nil {
		return nil, err
	}
	d := &Device{cfg: cfg, prof: cfg.Profile, log: log, state: stateDir(cfg.StateDir), changed: make(chan struct{}), plugged: true}
	id := DeriveIdentity(cfg.Seed, cfg.Index, cfg.Profile)
	if cfg.Identity != nil {
		id = *cfg.Identity
	}
	var err error
	if d.id, err = d.state.loadIdentity(id); err != nil {
		return nil, err
	}
	d.values = lockdownValues(d.id, d.prof)
	d.domains = lockdownDomains()
	if d.hosts, err = loadHosts(d.state); err != nil {
		return nil, err
	}
	key := cfg.LockdownKey
	if key == nil {
		if key, err = d.state.lockdownKey(); err != nil {
			return nil, err
		}
	}
	d.trust.Store(int32(cfg.Trust))
	if d.diag, err = newDiagnostics(d); err != nil {
		return nil, fmt.Errorf("sim: %s: %w", d.id.UDID, err)
	}
	d.link = newLink(cfg.Realism.LinkRate)
	if d.dev, err = newDeveloper(d); err != nil {
		d.diag.close()
		return nil, fmt.Errorf("sim: %s: %w", d.id.UDID, err)
	}
	services := map[string]lockdown.ServiceHandler{}
	if d.prof.CoreDeviceProxy {
		services[lockdown.CoreDeviceProxy] = lockdown.ServiceHandler{SSL: true, Serve: d.serveCoreDeviceProxy}
	}
	// RemotePairing over lockdown: every iOS 17+ device has it.
	// EnableServiceSSL is SIM (no reference shows the reply).
	services[pairing.LockdownServiceName] = lockdown.ServiceHandler{SSL: true, Serve: d.serveRemotePairingLockdown}
	if d.files, err = newAppStore(d); err != nil {
		d.diag.close()
		return nil, fmt.Errorf("sim: %s: %w", d.id.UDID, err)
	}
	d.core = newCoreDevice(d)
	d.lockdownServices(append(append(append(d.developerServices(), d.files.services()...), d.diag.services()...), cfg.Services...), services)
	d.ld, err = lockdown.NewServer(lockdown.ServerConfig{
		Values:   d.values,
		Domains:  d.domains,
		Key:      key,
		Services: services,
		Ports:    devicePorts{d},
		Trust:    d.lockdownTrust,
		// A real iPhone keeps a pairing the moment it is made: save the
		// record usbmuxd holds whenever a session proves it, so a host
		// killed without Close (kill -9) finds the device still trusting
		// it after a restart.
		OnSession: func(host string, _ tls.ConnectionState) {
			d.diag.log("lockdownd", LogDefault, "session started for host "+host)
			if err := d.saveLockdownPairingIfChanged(); err != nil {
				d.log.Warn("sim: saving the lockdown pairing", "udid", d.id.UDID, "err", err)
			}
		},
	})
	if err != nil {
		d.files.close()
		d.diag.close()
		return nil, fmt.Errorf("sim: %s: lockdown: %w", d.id.UDID, err)
	}
	d.restoreLockdownPairing()
	d.dev.save() // publishes the Developer Mode status as lockdownd's value
	if cfg.NCM != nil {
		if d.ncm, err = newNCMHost(d, *cfg.NCM); err != nil {
			d.ld.Close()
			d.files.close()
			d.diag.close()
			return nil, fmt.Errorf("sim: %s: USB-NCM: %w", d.id.UDID, err)
		}
	}
	d.life, d.cancel = context.WithCancel(context.Background())
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if err := d.startLocked(); err != nil {
		d.cancel()
		d.ld.Close()
		d.diag.close()
		if d.ncm != nil {
			d.ncm.close()
		}
		d.files.close()
		return nil, err
	}
	return d, nil
}

// Identity returns the device's identity.
func (d *Device) Identity() Identity { return d.id }

// Profile returns the device's iOS profile.
func (d *Device) Profile() Profile { return d.prof }

// UDID returns the device's UDID.
func (d *Device) UDID() string { return d.id.UDID }

// State returns the current state.
func (d *Device) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

// WaitState blocks until the device is in state s or ctx ends.
func (d *Device) WaitState(ctx context.Context, s State) error {
	for {
		d.mu.Lock()
		st, ch := d.st, d.changed
		d.mu.Unlock()
		if st == s {
			return nil
		}
		if st == StateClosed {
			return fmt.Errorf("sim: %s: closed while waiting for %s", d.id.UDID, s)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("sim: %s: waiting for %s (now %s): %w", d.id.UDID, s, st, ctx.Err())
		}
	}
}

func (d *Device) setStateLocked(s State) {
	if d.st == s {
		return
	}
	d.st = s
	close(d.changed)
	d.changed = make(chan struct{})
}

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	s := Stats{
		Boots: d.stats.boots.Load(), PairSetups: d.stats.pairSetups.Load(), Verifies: d.stats.verifies.Load(),
		TrustPrompts: d.stats.trustPrompts.Load(),
		Sessions:     d.stats.sessions.Load(), Reattaches: d.stats.reattaches.Load(),
	}
	if b := d.currentBoot(); b != nil {
		s.Connections = b.conns.len()
	}
	ts := d.tunnelStats()
	s.DroppedAbove, s.BoundaryViolations = ts.DroppedAbove, ts.BoundaryViolations
	return s
}

func (d *Device) currentBoot() *boot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.boot
}

// startLocked boots (and plugs in, if the cable is in). Caller holds opMu.
func (d *Device) startLocked() error {
	d.dev.onBoot()
	b, err := d.newBoot()
	if err != nil {
		return fmt.Errorf("sim: %s: boot: %w", d.id.UDID, err)
	}
	d.mu.Lock()
	d.boot = b
	d.setStateLocked(StateUnplugged)
	d.mu.Unlock()
	d.stats.boots.Add(1)
	d.core.reset()
	d.diag.onBoot(b)
	if d.plugged {
		if err := b.plugIn(); err != nil {
			d.shutdownLocked()
			return fmt.Errorf("sim: %s: plug in: %w", d.id.UDID, err)
		}
		d.mu.Lock()
		d.setStateLocked(StatePlugged)
		d.mu.Unlock()
	}
	d.log.Info("sim: device up", "udid", d.id.UDID, "profile", d.prof.Name, "plugged", d.plugged)
	return nil
}

// shutdownLocked ends the current boot. Caller holds opMu.
func (d *Device) shutdownLocked() {
	d.diag.goingDown()
	d.mu.Lock()
	b := d.boot
	d.boot = nil
	d.mu.Unlock()
	if b != nil {
		b.shutdown()
	}
}

// Close shuts the device down for good, saving the pair record usbmuxd
// holds for it, and waits for every goroutine. It is idempotent.
func (d *Device) Close() error {
	d.cancel()
	d.opMu.Lock()
	var err error
	if d.st != StateClosed {
		d.gate.setStall(false)
		err = d.saveLockdownPairing()
		d.shutdownLocked()
		d.ld.Close()
		if d.ncm != nil {
			d.ncm.close()
		}
		d.diag.close()
		d.mu.Lock()
		d.setStateLocked(StateClosed)
		d.mu.Unlock()
	}
	d.opMu.Unlock()
	d.wg.Wait()
	d.files.close()
	return err
}

// serveCoreDeviceProxy is the P1 service (tunnel.md §4): lockdown has done
// the service TLS; the current boot's tunnel endpoint runs the tunnel on it.
func (d *Device) serveCoreDeviceProxy(conn net.Conn) {
	b := d.currentBoot()
	if b == nil {
		conn.Close()
		return
	}
	b.ep.ServeCoreDeviceProxy(conn)
}

// serveRemotePairingLockdown is the lockdown service
// com.apple.dt.remotepairingdeviced.lockdown (remotepairing.md §1.4):
// RPPairing framing on the service connection, pair-setup without a
// prompt (the lockdown session already proved the host trusted), no
// tunnels. Hosts paired here join the store every other surface verifies
// against. The connection stays open until the host closes it.
func (d *Device) serveRemotePairingLockdown(conn net.Conn) {
	b := d.currentBoot()
	if b == nil {
		conn.Close()
		return
	}
	pd, err := d.newPairingDevice(pairing.ModeLockdown, nil)
	if err != nil {
		d.log.Warn("sim: RemotePairing over lockdown", "udid", d.id.UDID, "err", err)
		return
	}
	if err := pd.Serve(b.ctx, pairing.NewRPPairing(conn)); err != nil {
		d.log.Debug("sim: RemotePairing over lockdown", "udid", d.id.UDID, "err", err)
	}
}

// pairingDevice is the RemotePairing device role for one surface;
// createListener opens tunnel ports where that surface's host reaches the
// device.
func (d *Device) pairingDevice(createListener func(context.Context, string, pairing.ListenerRequest) (*pairing.Listener, error)) (*pairing.Server, error) {
	return d.newPairingDevice(pairing.ModeTrust, createListener)
}

func (d *Device) newPairingDevice(mode pairing.Mode, createListener func(context.Context, string, pairing.ListenerRequest) (*pairing.Listener, error)) (*pairing.Server, error) {
	name := d.id.DeviceName
	return pairing.NewServer(&pairing.ServerConfig{
		Identity: pairing.DeviceIdentity{
			Identifier:   d.id.PairingID,
			Seed:         d.id.PairingSeed,
			AltIRK:       d.id.AltIRK,
			BTAddr:       strings.ToUpper(d.id.BluetoothMAC),
			MAC:          macBytes(d.id.WiFiMAC),
			Model:        d.id.ProductType,
			Name:         name,
			SerialNumber: d.id.SerialNumber,
			UDID:         d.id.UDID,
		},
		// Simulator values of remotepairing.md §9.2.
		Handshake: pairing.HandshakeInfo{
			WireProtocolVersion: 26, MinimumSupportedWireProtocolVersion: 8,
			Options: pairing.DeviceOptions{AllowsPairSetup: true, AllowsIncomingTunnelConnections: true,
				AllowsSharingSensitiveInfo: true, AllowsPinlessPairing: false},
			Device: pairing.PeerDeviceInfo{Identifier: d.id.UDID, UDID: d.id.UDID, Name: name, Model: d.id.ProductType},
		},
		Mode:           mode,
		Consent:        d.consent,
		Hosts:          d.hosts,
		CreateListener: createListener,
		OnVerified:     func(string) { d.stats.verifies.Add(1) },
		OnPaired:       d.onPaired,
		Logger:         d.log,
	})
}

// lockdownTrust is the simulated user at lockdown's Trust dialog. A Pair
// answered pending and asked again is the same dialog, not a new one.
func (d *Device) lockdownTrust(string) lockdown.TrustAnswer {
	t := Trust(d.trust.Load())
	if !d.dialogShowing.Swap(t == TrustPending) {
		d.stats.trustPrompts.Add(1)
	}
	switch t {
	case TrustDeny:
		return lockdown.TrustDeny
	case TrustPending:
		return lockdown.TrustPending
	case TrustLocked:
		return lockdown.TrustLocked
	}
	return lockdown.TrustAccept
}

// consent is the simulated user at the Trust dialog.
func (d *Device) consent(ctx context.Context, host string) (bool, error) {
	d.stats.trustPrompts.Add(1)
	for {
		switch Trust(d.trust.Load()) {
		case TrustAccept:
			return true, nil
		case TrustDeny:
			return false, nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		}
	}
}
