package tunnel

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
)

// The manager keeps one tunnel per device (discovery.md §7, tunneld-api.md
// §1.2): discovery events come in through Apply, each device's preferred
// path is handed to an Establisher, and the resulting tunnels are listed by
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
// (ErrDead: the device went silent) or whose path is Detached leaves the
// table at once and is rebuilt after the device's back-off, or at once
// when the device is Attached again (replug, reboot). A device with no
// path left is forgotten, back-off included (go-ios resets on detach).

// Establisher builds a tunnel to a device over one discovered path (P1
// through usbmuxd, P2 over USB-NCM, P3 over Wi-Fi). ctx bounds the whole
// set-up; the returned Link runs until it fails or is closed.
type Establisher interface {
	Establish(ctx context.Context, path discovery.Event) (*Established, error)
}

// EstablishFunc adapts a function to Establisher.
type EstablishFunc func(ctx context.Context, path discovery.Event) (*Established, error)

// Establish implements Establisher.
func (f EstablishFunc) Establish(ctx context.Context, path discovery.Event) (*Established, error) {
	return f(ctx, path)
}

// Link is a running tunnel as the manager watches it; *Pump satisfies it.
// Close must be idempotent and return once the tunnel's goroutines have
// exited and its TUN is gone.
type Link interface {
	Done() <-chan struct{}
	Err() error
	Close() error
	Stats() Stats
}

var _ Link = (*Pump)(nil)

// Established is what an Establisher returns: the running tunnel and what
// the APIs list about it.
type Established struct {
	// UDID is the identity the handshake reported (lockdown
	// UniqueDeviceID, RSD or RemotePairing identifier); "" means the
	// discovered UDID.
	UDID string
	// Interface is the OS (or userspace) TUN name.
	Interface string
	Params    Params
	// Protocol is "tcp" or "quic".
	Protocol string
	Link     Link
	// Meta is carried to Entry.Meta untouched (the daemon's service
	// catalog, userspace proxy port, …).
	Meta any
}

// Entry is one established tunnel in the manager's table.
type Entry struct {
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
	Protocol  string
	// Path is the sighting the tunnel rides on (source, usbmuxd facts,
	// address); Path.UDID is the form the source reported (usbmuxd's
	// SerialNumber).
	Path    discovery.Event
	Meta    any
	Created time.Time
}

// ManagerConfig configures a Manager. Establisher is required.
type ManagerConfig struct {
	Establisher Establisher
	// Backoff is the per-device retry schedule after a failed attempt or
	// a tunnel that died; the zero value means 250 ms doubling to 30 s
	// with ±20 % jitter. (go-ios waits 30 s to 300 s; a device that comes
	// back is retried at once anyway, through its Attached event.)
	Backoff discovery.Backoff
	// SlowBackoff is the schedule after an attempt whose error asks for
	// RetrySlow (the user tapped Don't Trust: another dialog a second
	// later would only nag); the zero value means 2 min (±20 %) doubling
	// to 15 min. An Attached event (replug) still retries at once.
	SlowBackoff discovery.Backoff
	// AttemptTimeout bounds one establishment, Trust dialog included
	// (discovery.md §8: 30 s).
	AttemptTimeout time.Duration
	// CancelHold is how long a device whose tunnel was cancelled through
	// the API waits before it is tunnelled again (default 1 s: go-ios's
	// agent recreates a deleted tunnel at its next 1 s poll).
	CancelHold time.Duration
	// OnChange is called (from the manager's goroutine, so it must not
	// block or call back into the Manager) after every change of the
	// table.
	OnChange func()
	Logger   *slog.Logger
}

// Errors of Start.
var (
	// ErrUnknownDevice: no monitor has seen the device.
	ErrUnknownDevice = errors.New("tunnel: device not found")
	// ErrNoPath: the device is known but no path matches the request.
	ErrNoPath = errors.New("tunnel: no matching path to the device")
	// ErrManagerClosed: the manager is shut down.
	ErrManagerClosed = errors.New("tunnel: manager closed")
	// ErrAttemptCanceled: the attempt was abandoned (Clear, the path went away).
	ErrAttemptCanceled = errors.New("tunnel: attempt canceled")
)

// RetryPolicy says when the manager tries a device again after a failed
// attempt. An establishment error chooses one by implementing Retrier
// (found with errors.As); any other error gets RetryBackoff.
type RetryPolicy int

const (
	// RetryBackoff: after the device's back-off (ManagerConfig.Backoff).
	RetryBackoff RetryPolicy = iota
	// RetrySlow: after the slow back-off (ManagerConfig.SlowBackoff),
	// minutes: the user refused, and a new attempt would ask again.
	RetrySlow
	// RetryOnAttach: not until the device is attached again (replug):
	// the failure is permanent for this path (no CoreDeviceProxy before
	// iOS 17.4, an unsupported protocol).
	RetryOnAttach
)

func (p RetryPolicy) String() string {
	switch p {
	case RetryBackoff:
		return "backoff"
	case RetrySlow:
		return "slow"
	case RetryOnAttach:
		return "on-attach"
	}
	return fmt.Sprintf("RetryPolicy(%d)", int(p))
}

// Retrier is implemented by errors that choose their RetryPolicy.
type Retrier interface {
	Retry() RetryPolicy
}

// RetryOf is the policy err asks for: the first Retrier in its chain, or
// RetryBackoff.
func RetryOf(err error) RetryPolicy {
	var r Retrier
	if errors.As(err, &r) {
		return r.Retry()
	}
	return RetryBackoff
}

// HeldError is Start's answer for a device that waits after a failed
// attempt whose policy is RetrySlow or RetryOnAttach: no new attempt is
// made (it would raise the Trust dialog again, or fail the same way).
// Err is that attempt's error; Until is when the manager tries again by
// itself (zero: when the device is attached again).
type HeldError struct {
	UDID  string
	Until time.Time
	Err   error
}

func (e *HeldError) Error() string {
	when := "when it is plugged in again"
	if !e.Until.IsZero() {
		when = fmt.Sprintf("in %s, or at once when it is plugged in again", time.Until(e.Until).Round(time.Second))
	}
	return fmt.Sprintf("tunnel: device %s: not tried again until later (next try %s): %v", e.UDID, when, e.Err)
}

func (e *HeldError) Unwrap() error { return e.Err }

// stepKinds are the short names of establishment steps, the /metrics
// errors{kind} label.
var stepKinds = map[string]string{
	StepUsbmux: "usbmux", StepLockdown: "lockdown", StepRSD: "rsd", StepControl: "control",
	StepPairing: "pairing", StepVerify: "verify", StepCreateListener: "listener",
	StepConnectListener: "listener", StepTLSPSK: "tlspsk", StepQUIC: "quic",
	StepCDTunnel: "cdtunnel", StepTUN: "tun",
}

// ErrorKind classifies an establishment or tunnel error for counting: the
// failed step of an *Error ("lockdown", "verify", "tun", …), "timeout",
// "dead" (liveness probe), "canceled" or "establish".
func ErrorKind(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrDead):
		return "dead"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled), errors.Is(err, ErrAttemptCanceled):
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

// StartRequest asks for a tunnel to one device now (GET /start-tunnel).
type StartRequest struct {
	// UDID in any form (dashes and case are ignored).
	UDID string
	// Match, if set, restricts the paths that may be used (connection
	// type, address).
	Match func(discovery.Event) bool
}

// ManagerStats are the manager's counters since it started.
type ManagerStats struct {
	Tunnels    int
	ByPath     map[string]int // established tunnels by PathName
	Reconnects uint64         // tunnels rebuilt for a device that had one before
	Errors     map[string]uint64
	// Sent and Received are tunnel payload bytes toward and from devices,
	// over every tunnel so far.
	Sent, Received uint64
}

// Manager keeps one tunnel per device. Its methods are safe for concurrent
// use.
type Manager struct {
	cfg     ManagerConfig
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
	table     []*live            // established, in order
	links     map[*live]struct{} // every link not yet added to ended
	ended     Stats              // totals of finished links
	errors    map[string]uint64  // failures by ErrorKind
	byPath    map[string]int     // established tunnels by PathName
	unsettled atomic.Int64       // devices whose first attempt is under way
	recon     atomic.Uint64
}

// NewManager starts a manager; Close stops it.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Establisher == nil {
		panic("tunnel: ManagerConfig.Establisher is nil")
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
	m := &Manager{
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
		byPath:   map[string]int{},
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
func (m *Manager) Apply(ev discovery.Event) {
	done := make(chan struct{})
	if m.post(func() { m.apply(ev); close(done) }) {
		<-done
	}
}

// Tunnels returns the established tunnels in the order they came up. A
// tunnel whose link has ended is never listed, even before the manager has
// processed its end.
func (m *Manager) Tunnels() []Entry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Entry, 0, len(m.table))
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
// ctx ends. ErrUnknownDevice and ErrNoPath mean nothing was attempted.
func (m *Manager) Start(ctx context.Context, req StartRequest) (Entry, error) {
	reply := make(chan startResult, 1)
	if !m.post(func() { m.start(req, reply) }) {
		return Entry{}, ErrManagerClosed
	}
	select {
	case r := <-reply:
		return r.entry, r.err
	case <-ctx.Done():
		return Entry{}, ctx.Err()
	case <-m.loopDone:
		return Entry{}, ErrManagerClosed
	}
}

// Cancel tears down every established tunnel whose UDID equals udid
// exactly (pymobiledevice3's /cancel); attempts under way are left alone.
// The devices are tunnelled again after CancelHold if still present. It
// returns how many tunnels it closed.
func (m *Manager) Cancel(udid string) int {
	n := make(chan int, 1)
	if !m.post(func() { n <- m.cancelUDID(udid) }) {
		return 0
	}
	return <-n
}

// Clear tears down every tunnel and abandons every attempt
// (pymobiledevice3's /clear_tunnels); devices still present are tunnelled
// again after CancelHold.
func (m *Manager) Clear() {
	done := make(chan struct{})
	if m.post(func() { m.clear(); close(done) }) {
		<-done
	}
}

// Settled reports whether every known device has finished its first
// attempt (go-ios's /ready).
func (m *Manager) Settled() bool { return m.unsettled.Load() == 0 }

// Stats returns the counters.
func (m *Manager) Stats() ManagerStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := ManagerStats{
		Reconnects: m.recon.Load(),
		Errors:     make(map[string]uint64, len(m.errors)),
		ByPath:     make(map[string]int, len(m.byPath)),
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
func (m *Manager) Close() error {
	m.closing.Do(func() {
		close(m.quit)
		m.stopLife()
	})
	m.wg.Wait()
	return nil
}

// post runs f on the loop; false means the loop has gone.
func (m *Manager) post(f func()) bool {
	select {
	case m.ops <- f:
		return true
	case <-m.loopDone:
		return false
	}
}

// PathName names the way a sighting reaches its device, as the APIs and
// metrics label it: "usbmux-usb", "usbmux-network", "usb-ncm", "mobdev2",
// "wifi".
func PathName(ev discovery.Event) string {
	switch ev.Source {
	case discovery.SourceUsbmux:
		if ev.ConnectionType == "Network" {
			return "usbmux-network"
		}
		return "usbmux-usb"
	case discovery.SourceNCM:
		return "usb-ncm"
	case discovery.SourceMobdev2:
		return "mobdev2"
	}
	return "wifi"
}

// PMD3Key is pymobiledevice3's table key for a tunnel over ev to the device
// whose handshake reported udid (tunneld-api.md §1.2): the "interface" GET /
// lists.
func PMD3Key(ev discovery.Event, udid string) string {
	switch ev.Source {
	case discovery.SourceUsbmux:
		return "usbmux-" + ev.UDID + "-" + ev.ConnectionType
	case discovery.SourceMobdev2:
		return "mobdev2-" + udid + "-" + ev.Addr.Addr().String()
	}
	// USB-NCM and Wi-Fi: the device address, with its zone when link-local
	// (netip prints the zone).
	if ev.Addr.IsValid() {
		return ev.Addr.Addr().String()
	}
	return string(ev.Source) + "-" + udid
}
