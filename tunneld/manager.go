package tunneld

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/tunnel"
)

// The manager keeps one tunnel per device (discovery.md §7, tunneld-api.md
// §1.2): discovery events come in through Apply, each device's preferred
// path is handed to the builder, and the resulting tunnels are listed by
// Tunnels until they end. One goroutine (the loop, manager_loop.go) owns
// every device's state; attempts and tunnel watchers run on goroutines of
// their own that report back to it.
//
// A device's life in the manager:
//
//	  Attached ──▶ connecting ──ok──▶ up ──died/Detached/Cancel──▶ waiting
//	                  │  ▲                                          │
//	                 fail └────────── retry (back-off) ◀─────────────┘
//	                  ▼
//	               waiting ──Attached (the device answers again)──▶ connecting
//
// Healing: a tunnel whose transport ends, whose liveness probe fails
// (tunnel.ErrDead: the device went silent) or whose path is Detached leaves the
// table at once and is rebuilt after the device's back-off, or at once
// when the device is Attached again (replug, reboot). A device with no
// path left is forgotten, back-off included (go-ios resets on detach).

// builder builds a tunnel to a device over one discovered path (P1
// through usbmuxd, P2 over USB-NCM, P3 over Wi-Fi, P1 over Wi-Fi lockdown):
// the daemon's establisher, around establish.Establish. ctx bounds the
// whole set-up; the returned link runs until it fails or is closed.
type builder interface {
	Establish(ctx context.Context, path discovery.Event) (*established, error)
}

// link is a running tunnel as the manager watches it; *establish.Tunnel
// satisfies it. Close must be idempotent and return once the tunnel's
// goroutines have exited and its TUN is gone.
type link interface {
	Done() <-chan struct{}
	Err() error
	Close() error
	Stats() tunnel.Stats
}

var _ link = (*establish.Tunnel)(nil)

// established is what a builder returns: the running tunnel and what the
// APIs list about it.
type established struct {
	// UDID is the identity the handshake reported (lockdown
	// UniqueDeviceID, RSD or RemotePairing identifier); "" means the
	// discovered UDID.
	UDID string
	// Interface is the OS (or userspace) TUN name.
	Interface string
	Params    tunnel.Params
	// Protocol is "tcp" or "quic".
	Protocol establish.Protocol
	Link     link
	// Meta is what the daemon keeps with the tunnel (service catalog,
	// userspace proxy port, …), carried to entry.Meta; nil in the
	// manager's own tests.
	Meta *tunnelMeta
	// Steps is how long each step took: establish.Tunnel.Steps, then
	// the daemon's own (trusted RSD catalog, userspace relay); the
	// manager adds stepListed.
	Steps []establish.StepTime
	// returned is when the builder returned it (the manager sets it).
	returned time.Time
}

// Set-up steps of the daemon's own, after establish's (iosmux_tunnel_setup_step_seconds).
const (
	// stepCatalog reads the trusted RSD's service list through the
	// tunnel (or advertises it).
	stepCatalog = "trusted RSD catalog"
	// stepRelay starts go-ios's userspace proxy and the loopback relay.
	stepRelay = "userspace relay"
	// stepListed is the manager taking the tunnel into its table, from
	// the builder's return to the listing.
	stepListed = "listed"
)

// entry is one established tunnel in the manager's table.
type entry struct {
	// ID is unique per tunnel for the manager's lifetime.
	ID uint64
	// UDID as the handshake reported it; the pymobiledevice3 API groups
	// by it and matches it exactly.
	UDID string
	// Key is pymobiledevice3's table key (tunneld-api.md §1.2).
	Key       string
	Interface string
	Address   netip.Addr
	RSDPort   uint16
	Protocol  establish.Protocol
	// Path is the sighting the tunnel rides on (source, usbmuxd facts,
	// address); Path.UDID is the form the source reported (usbmuxd's
	// SerialNumber).
	Path    discovery.Event
	Meta    *tunnelMeta
	Created time.Time
}

// managerConfig configures a manager. Establisher is required.
type managerConfig struct {
	Establisher builder
	// Backoff is the per-device retry schedule after a failed attempt or
	// a tunnel that died; the zero value means 250 ms doubling to 30 s
	// with ±20 % jitter. (go-ios waits 30 s to 300 s; a device that comes
	// back is retried at once anyway, through its Attached event.)
	Backoff retry.Backoff
	// SlowBackoff is the schedule after an attempt whose error asks for
	// retrySlow (the user tapped Don't Trust: another dialog a second
	// later would only nag); the zero value means 2 min (±20 %) doubling
	// to 15 min. An Attached event (replug) still retries at once.
	SlowBackoff retry.Backoff
	// AttemptTimeout bounds one establishment, Trust dialog included
	// (discovery.md §8: 30 s).
	AttemptTimeout time.Duration
	// CancelHold is how long a device whose tunnel was cancelled through
	// the API waits before it is tunnelled again (default 1 s: go-ios's
	// agent recreates a deleted tunnel at its next 1 s poll).
	CancelHold time.Duration
	// OnChange is called (from the manager's goroutine, so it must not
	// block or call back into the manager) after every change of the
	// table.
	OnChange func()
	// OnSetUp, if set, is called (like OnChange) for every tunnel listed:
	// its path, the time from the start of the attempt to the listing,
	// and its steps.
	OnSetUp func(path rsdapi.Path, total time.Duration, steps []establish.StepTime)
	Logger  *slog.Logger
}

// Errors of Start.
var (
	// errUnknownDevice: no monitor has seen the device.
	errUnknownDevice = errors.New("tunnel: device not found")
	// errNoPath: the device is known but no path matches the request.
	errNoPath = errors.New("tunnel: no matching path to the device")
	// errManagerClosed: the manager is shut down.
	errManagerClosed = errors.New("tunnel: manager closed")
	// errAttemptCanceled: the attempt was abandoned (Clear, the path went away).
	errAttemptCanceled = errors.New("tunnel: attempt canceled")
)

// retryPolicy says when the manager tries a device again after a failed
// attempt. An establishment error chooses one by implementing retrier
// (found with errors.As); any other error gets retryBackoff.
type retryPolicy int

const (
	// retryBackoff: after the device's back-off (managerConfig.Backoff).
	retryBackoff retryPolicy = iota
	// retrySlow: after the slow back-off (managerConfig.SlowBackoff),
	// minutes: the user refused, and a new attempt would ask again.
	retrySlow
	// retryOnAttach: not until the device is attached again (replug):
	// the failure is permanent for this path (no CoreDeviceProxy before
	// iOS 17.4, an unsupported protocol).
	retryOnAttach
)

func (p retryPolicy) String() string {
	switch p {
	case retryBackoff:
		return "backoff"
	case retrySlow:
		return "slow"
	case retryOnAttach:
		return "on-attach"
	}
	return fmt.Sprintf("retryPolicy(%d)", int(p))
}

// retrier is implemented by errors that choose their retryPolicy.
type retrier interface {
	Retry() retryPolicy
}

// retryOf is the policy err asks for: the first retrier in its chain, or
// retryBackoff.
func retryOf(err error) retryPolicy {
	var r retrier
	if errors.As(err, &r) {
		return r.Retry()
	}
	return retryBackoff
}

// heldError is Start's answer for a device that waits after a failed
// attempt whose policy is retrySlow or retryOnAttach: no new attempt is
// made (it would raise the Trust dialog again, or fail the same way).
// Err is that attempt's error; Until is when the manager tries again by
// itself (zero: when the device is attached again).
type heldError struct {
	UDID  string
	Until time.Time
	Err   error
}

func (e *heldError) Error() string {
	when := "when it is plugged in again"
	if !e.Until.IsZero() {
		when = fmt.Sprintf("in %s, or at once when it is plugged in again", time.Until(e.Until).Round(time.Second))
	}
	return fmt.Sprintf("tunnel: device %s: not tried again until later (next try %s): %v", e.UDID, when, e.Err)
}

func (e *heldError) Unwrap() error { return e.Err }

// stepKinds are the short names of establishment steps, the /metrics
// errors{kind} label.
var stepKinds = map[string]string{
	establish.StepUsbmux: "usbmux", establish.StepLockdown: "lockdown", establish.StepRSD: "rsd", establish.StepControl: "control",
	establish.StepPairing: "pairing", establish.StepVerify: "verify", establish.StepCreateListener: "listener",
	establish.StepConnectListener: "listener", establish.StepTLSPSK: "tlspsk", establish.StepQUIC: "quic",
	establish.StepCDTunnel: "cdtunnel", establish.StepTUN: "tun",
}

// errorKind classifies an establishment or tunnel error for counting: the
// failed step of an *establish.Error ("lockdown", "verify", "tun", …), "timeout",
// "dead" (liveness probe), "canceled" or "establish".
func errorKind(err error) string {
	var e *establish.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, tunnel.ErrDead):
		return "dead"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled), errors.Is(err, errAttemptCanceled):
		return "canceled"
	case errors.As(err, &e) && e.Step != "":
		if k, ok := stepKinds[e.Step]; ok {
			return k
		}
		return slug(e.Step)
	}
	return "establish"
}

// slug lowers s to [a-z0-9_] for a metric label.
func slug(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// startRequest asks for a tunnel to one device now (GET /start-tunnel).
type startRequest struct {
	// UDID in any form (dashes and case are ignored).
	UDID string
	// Match, if set, restricts the paths that may be used (connection
	// type, address).
	Match func(discovery.Event) bool
}

// managerStats are the manager's counters since it started.
type managerStats struct {
	Tunnels    int
	ByPath     map[rsdapi.Path]int // established tunnels by pathOf
	Reconnects uint64              // tunnels rebuilt for a device that had one before
	Errors     map[string]uint64
	// Sent and Received are tunnel payload bytes toward and from devices,
	// over every tunnel so far.
	Sent, Received uint64
}

// manager keeps one tunnel per device. Its methods are safe for concurrent
// use.
type manager struct {
	cfg     managerConfig
	log     *slog.Logger
	tracker *discovery.Tracker

	life     context.Context // cancelled by Close: attempts end
	stopLife context.CancelFunc
	ops      chan func()   // work for the loop
	quit     chan struct{} // closed by Close
	loopDone chan struct{} // closed when the loop has returned
	wg       sync.WaitGroup
	closing  sync.Once

	// Loop-owned.
	devices map[string]*device // by discovery.NormalizeUDID
	everUp  map[string]bool
	nextID  uint64

	// Published by the loop, read by anyone.
	mu        sync.RWMutex
	table     []*live             // established, in order
	links     map[*live]struct{}  // every link not yet added to ended
	ended     tunnel.Stats        // totals of finished links
	errors    map[string]uint64   // failures by errorKind
	byPath    map[rsdapi.Path]int // established tunnels by pathOf
	unsettled atomic.Int64        // devices whose first attempt is under way
	recon     atomic.Uint64
}

// newManager starts a manager; Close stops it.
func newManager(cfg managerConfig) *manager {
	if cfg.Establisher == nil {
		panic("tunnel: managerConfig.Establisher is nil")
	}
	if cfg.Backoff.Min <= 0 {
		cfg.Backoff.Min = 250 * time.Millisecond
	}
	if cfg.Backoff.Max <= 0 {
		cfg.Backoff.Max = 30 * time.Second
	}
	if cfg.SlowBackoff.Min <= 0 {
		cfg.SlowBackoff.Min = 2 * time.Minute
	}
	if cfg.SlowBackoff.Max <= 0 {
		cfg.SlowBackoff.Max = 15 * time.Minute
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 30 * time.Second
	}
	if cfg.CancelHold <= 0 {
		cfg.CancelHold = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &manager{
		cfg:      cfg,
		log:      log,
		tracker:  discovery.NewTracker(),
		ops:      make(chan func()),
		quit:     make(chan struct{}),
		loopDone: make(chan struct{}),
		devices:  map[string]*device{},
		everUp:   map[string]bool{},
		links:    map[*live]struct{}{},
		errors:   map[string]uint64{},
		byPath:   map[rsdapi.Path]int{},
	}
	m.life, m.stopLife = context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.run()
	return m
}

// Apply hands the manager one discovery event and returns once the table
// reflects it (a Detached path's tunnel is no longer listed). It never
// waits for a tunnel to be built, so it can be discovery.Run's emit.
// Events after Close are dropped.
func (m *manager) Apply(ev discovery.Event) {
	done := make(chan struct{})
	if m.post(func() { m.apply(ev); close(done) }) {
		<-done
	}
}

// Tunnels returns the established tunnels in the order they came up. A
// tunnel whose link has ended is never listed, even before the manager has
// processed its end.
func (m *manager) Tunnels() []entry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]entry, 0, len(m.table))
	for _, l := range m.table {
		select {
		case <-l.link.Done():
			continue
		default:
		}
		out = append(out, l.entry)
	}
	return out
}

// Start returns the device's tunnel, building it now if there is none, and
// blocks until it is up, the attempt failed (the establisher's error), or
// ctx ends. errUnknownDevice and errNoPath mean nothing was attempted.
func (m *manager) Start(ctx context.Context, req startRequest) (entry, error) {
	reply := make(chan startResult, 1)
	if !m.post(func() { m.start(req, reply) }) {
		return entry{}, errManagerClosed
	}
	select {
	case r := <-reply:
		return r.entry, r.err
	case <-ctx.Done():
		return entry{}, ctx.Err()
	case <-m.loopDone:
		return entry{}, errManagerClosed
	}
}

// Cancel tears down every established tunnel whose UDID equals udid
// exactly (pymobiledevice3's /cancel); attempts under way are left alone.
// The devices are tunnelled again after CancelHold if still present. It
// returns how many tunnels it closed.
func (m *manager) Cancel(udid string) int {
	n := make(chan int, 1)
	if !m.post(func() { n <- m.cancelUDID(udid) }) {
		return 0
	}
	return <-n
}

// Clear tears down every tunnel and abandons every attempt
// (pymobiledevice3's /clear_tunnels); devices still present are tunnelled
// again after CancelHold.
func (m *manager) Clear() {
	done := make(chan struct{})
	if m.post(func() { m.clear(); close(done) }) {
		<-done
	}
}

// Settled reports whether every known device has finished its first
// attempt (go-ios's /ready).
func (m *manager) Settled() bool { return m.unsettled.Load() == 0 }

// Stats returns the counters.
func (m *manager) Stats() managerStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := managerStats{
		Reconnects: m.recon.Load(),
		Errors:     make(map[string]uint64, len(m.errors)),
		ByPath:     make(map[rsdapi.Path]int, len(m.byPath)),
		Sent:       m.ended.SentBytes,
		Received:   m.ended.ReceivedBytes,
	}
	for k, v := range m.errors {
		s.Errors[k] = v
	}
	for k, v := range m.byPath {
		s.ByPath[k] = v
		s.Tunnels += v
	}
	for l := range m.links {
		st := l.link.Stats()
		s.Sent += st.SentBytes
		s.Received += st.ReceivedBytes
	}
	return s
}

// Close abandons every attempt, tears every tunnel down (their TUNs are
// removed) and returns once all of the manager's goroutines have exited.
// It is idempotent.
func (m *manager) Close() error {
	m.closing.Do(func() {
		close(m.quit)
		m.stopLife()
	})
	m.wg.Wait()
	return nil
}

// post runs f on the loop; false means the loop has gone.
func (m *manager) post(f func()) bool {
	select {
	case m.ops <- f:
		return true
	case <-m.loopDone:
		return false
	}
}
