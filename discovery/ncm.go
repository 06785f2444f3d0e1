package discovery

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/iosmux/iosmux/discovery/mdns"
	"github.com/iosmux/iosmux/internal/retry"
)

// RSDPort is the untrusted RSD port a device serves on its USB-NCM link
// (pymobiledevice3 RSD_PORT, discovery.md §2.1); used when the _remoted._tcp
// SRV record carries no port.
const RSDPort = 58783

// BrowseFunc browses one interface; mdns.Browse is the real one. Tests and
// other network namespaces inject their own (discovery.md §9).
type BrowseFunc func(ctx context.Context, cfg mdns.BrowseConfig) ([]mdns.Instance, error)

// IdentifyFunc learns the UDID of the device at addr (for USB-NCM, an RSD
// handshake: peerDeviceInfo / UniqueDeviceID). An error means "not now":
// the sighting is retried later.
type IdentifyFunc func(ctx context.Context, ev Event) (udid string, err error)

// NCMMonitor finds devices on USB-NCM links (discovery.md §2): whenever an
// interface gains an IPv6 link-local address it browses _remoted._tcp on
// that link and reports the device found there as Attached; when the link
// or its address goes away the device is Detached. A link where nothing
// answers (remoted starts a few seconds after the link comes up) is browsed
// again with back-off, and every link is browsed again every Rescan.
type NCMMonitor struct {
	// Links reports the links; nil means NewLinkWatcher(Ignore).
	Links LinkWatcher
	// Ignore holds interface name prefixes to skip besides tun/utun (for
	// instance the daemon's own TUN names).
	Ignore []string
	// Browse defaults to mdns.Browse.
	Browse BrowseFunc
	// Identify, when set, fills Event.UDID before the event is emitted.
	Identify IdentifyFunc
	// Rescan is the forced full rescan period (default 30 s,
	// discovery.md §8); BrowseTimeout bounds one browse (default 3 s).
	Rescan        time.Duration
	BrowseTimeout time.Duration
	// Backoff paces browsing a silent link again (default 1 s doubling,
	// capped at Rescan).
	Backoff retry.Backoff
	Logger  *slog.Logger
}

type ncmResult struct {
	link   Link
	events []Event // Attached, identified if Identify is set
	err    error
}

// Run implements Monitor.
func (m *NCMMonitor) Run(ctx context.Context, emit func(Event)) error {
	log := m.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	links := m.Links
	if links == nil {
		links = NewLinkWatcher(m.Ignore)
		if c, ok := links.(interface{ Close() error }); ok {
			defer c.Close()
		}
	}
	rescan := m.Rescan
	if rescan <= 0 {
		rescan = 30 * time.Second
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: every goroutine below watches ctx

	// The watcher's latest list; older undelivered lists are replaced.
	snapshots := make(chan []Link, 1)
	watchErr := make(chan error, 1)
	wg.Go(func() {
		watchErr <- links.Watch(ctx, func(l []Link) {
			select {
			case <-snapshots:
			default:
			}
			snapshots <- l
		})
	})

	type linkState struct {
		link     Link
		due      time.Time // zero: not scheduled
		inflight bool
		backoff  retry.Backoff
		seen     map[string]Event // Attached sightings by Key
	}
	state := map[string]*linkState{}
	results := make(chan ncmResult)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	rescanTick := time.NewTicker(rescan)
	defer rescanTick.Stop()

	detachAll := func(st *linkState) {
		for _, e := range st.seen {
			e.Kind = Detached
			emit(e)
		}
		st.seen = nil
	}
	for {
		// Arm the timer for the earliest due link.
		var next time.Time
		for _, st := range state {
			if !st.inflight && !st.due.IsZero() && (next.IsZero() || st.due.Before(next)) {
				next = st.due
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), 0))
		}

		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watchErr:
			return err
		case l := <-snapshots:
			current := map[string]Link{}
			for _, lk := range l {
				current[lk.Name] = lk
			}
			for name, st := range state {
				if lk, ok := current[name]; !ok || lk != st.link {
					detachAll(st)
					delete(state, name)
				}
			}
			for name, lk := range current {
				if _, ok := state[name]; !ok {
					st := &linkState{link: lk, due: time.Now(), backoff: m.Backoff}
					if st.backoff.Min <= 0 {
						st.backoff.Min = time.Second
					}
					if st.backoff.Max <= 0 {
						st.backoff.Max = rescan
					}
					state[name] = st
				}
			}
		case <-rescanTick.C:
			for _, st := range state {
				if !st.inflight {
					st.due = time.Now()
				}
			}
		case <-timer.C:
			now := time.Now()
			names := make([]string, 0, len(state))
			for name := range state {
				names = append(names, name)
			}
			slices.Sort(names)
			for _, name := range names {
				st := state[name]
				if st.inflight || st.due.IsZero() || st.due.After(now) {
					continue
				}
				st.inflight, st.due = true, time.Time{}
				lk, known := st.link, maps.Clone(st.seen)
				wg.Go(func() {
					r := m.probe(ctx, lk, known)
					select {
					case results <- r:
					case <-ctx.Done():
					}
				})
			}
		case r := <-results:
			st, ok := state[r.link.Name]
			if !ok || st.link != r.link {
				continue // the link changed meanwhile; its new state browses anew
			}
			st.inflight = false
			if r.err != nil {
				log.Debug("discovery: ncm browse", "interface", r.link.Name, "err", r.err)
			}
			if len(r.events) == 0 {
				st.due = time.Now().Add(st.backoff.Next())
				continue
			}
			st.backoff.Reset()
			if st.seen == nil {
				st.seen = map[string]Event{}
			}
			for _, e := range r.events {
				if old, ok := st.seen[e.Key()]; ok {
					if old.Addr == e.Addr && old.UDID == e.UDID {
						continue
					}
					old.Kind = Detached
					emit(old)
				}
				st.seen[e.Key()] = e
				emit(e)
			}
		}
	}
}

// probe browses _remoted._tcp on one link and identifies what answered;
// a device already known at the same address keeps its UDID without a new
// handshake.
func (m *NCMMonitor) probe(ctx context.Context, lk Link, known map[string]Event) ncmResult {
	browse := m.Browse
	if browse == nil {
		browse = mdns.Browse
	}
	timeout := m.BrowseTimeout
	if timeout <= 0 {
		timeout = mdns.DefaultBrowseTimeout
	}
	found, err := browse(ctx, mdns.BrowseConfig{Interface: lk.Name, Service: mdns.ServiceRemoted, Timeout: timeout, MaxInstances: 1})
	r := ncmResult{link: lk, err: err}
	for _, in := range found {
		addr, ok := pickAddr(in.Addrs, lk.Name, true)
		if !ok {
			continue
		}
		port := in.Port
		if port == 0 {
			port = RSDPort
		}
		e := Event{
			Kind: Attached, Source: SourceNCM, Conn: ConnUSBNCM,
			Addr: netip.AddrPortFrom(addr, port), Addrs: in.Addrs, Interface: lk.Name,
			Instance: in.Name, Text: in.Text,
		}
		if old, ok := known[e.Key()]; ok && old.Addr == e.Addr {
			e.UDID = old.UDID
		} else if m.Identify != nil {
			udid, err := m.Identify(ctx, e)
			if err != nil {
				r.err = err
				continue
			}
			e.UDID = udid
		}
		r.events = append(r.events, e)
	}
	return r
}

// pickAddr chooses the address to reach a device: on a USB-NCM link its
// link-local IPv6 (scoped to the link), on Wi-Fi IPv4 first, then global
// IPv6, then link-local.
func pickAddr(addrs []netip.Addr, ifname string, linkLocalFirst bool) (netip.Addr, bool) {
	rank := func(a netip.Addr) int {
		ll := a.Is6() && a.IsLinkLocalUnicast()
		r := 1 // global IPv6
		switch {
		case a.Is4():
			r = 0
		case ll:
			r = 2
		}
		if linkLocalFirst {
			r = 2 - r
		}
		return r
	}
	var best netip.Addr
	for _, a := range addrs {
		if a.Is6() && a.IsLinkLocalUnicast() {
			a = a.WithZone(ifname)
		}
		if !best.IsValid() || rank(a) < rank(best) {
			best = a
		}
	}
	return best, best.IsValid()
}
