package discovery

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iosmux/iosmux/discovery/mdns"
	"github.com/iosmux/iosmux/internal/retry"
)

// BrowseMonitor browses one service type on the local networks over and
// over (pymobiledevice3's Wi-Fi and mobdev2 monitors, discovery.md §3, §5):
// a pass browses every interface at once for BrowseTimeout, then waits
// Interval. New instances are reported Attached; an instance missing from
// Misses passes in a row (or withdrawn with a goodbye) is Detached.
//
// The device's identity is not in the advertisement (the TXT identifier is
// not the UDID, discovery.md §3.1): Identify, when set, proves it (pair-verify against
// stored records, or the mobdev2 MAC / authTag match) and an instance it
// rejects is not reported; without Identify, events carry no UDID and the
// caller identifies.
type BrowseMonitor struct {
	// Service is mdns.ServiceRemotePairing or mdns.ServiceMobdev2.
	Service string
	// Interfaces lists the links to browse; nil means every up, multicast,
	// non-loopback interface except tunnels and Ignore.
	Interfaces func() ([]string, error)
	Ignore     []string
	Browse     BrowseFunc
	Identify   IdentifyFunc
	// Interval between passes (default 5 s), BrowseTimeout per pass
	// (default 3 s), Misses before Detached (default 3).
	Interval      time.Duration
	BrowseTimeout time.Duration
	Misses        int
	Logger        *slog.Logger
}

// NewWiFiMonitor browses _remotepairing._tcp.
func NewWiFiMonitor() *BrowseMonitor { return &BrowseMonitor{Service: mdns.ServiceRemotePairing} }

// NewMobdev2Monitor browses _apple-mobdev2._tcp.
func NewMobdev2Monitor() *BrowseMonitor { return &BrowseMonitor{Service: mdns.ServiceMobdev2} }

func (m *BrowseMonitor) source() Source {
	if strings.HasPrefix(m.Service, mdns.ServiceMobdev2) {
		return SourceMobdev2
	}
	return SourceRemotePairing
}

type sighting struct {
	ev     Event
	missed int
}

// Run implements Monitor.
func (m *BrowseMonitor) Run(ctx context.Context, emit func(Event)) error {
	log := m.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := m.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	misses := m.Misses
	if misses <= 0 {
		misses = 3
	}
	seen := map[string]*sighting{}
	for {
		found := m.pass(ctx, log)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		present := map[string]bool{}
		for _, e := range found {
			k := e.Key()
			present[k] = true
			if s, ok := seen[k]; ok {
				s.missed = 0
				if s.ev.Addr == e.Addr && slices.Equal(s.ev.Text, e.Text) {
					continue
				}
				// Moved or re-advertised: end the old sighting first.
				old := s.ev
				old.Kind = Detached
				emit(old)
			}
			if m.Identify != nil {
				udid, err := m.Identify(ctx, e)
				if err != nil {
					log.Debug("discovery: identify", "source", e.Source, "instance", e.Instance, "err", err)
					delete(seen, k)
					continue
				}
				e.UDID = udid
			}
			seen[k] = &sighting{ev: e}
			emit(e)
		}
		keys := make([]string, 0, len(seen))
		for k := range seen {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s := seen[k]
			if present[k] {
				continue
			}
			if s.missed++; s.missed >= misses {
				delete(seen, k)
				s.ev.Kind = Detached
				emit(s.ev)
			}
		}
		if err := retry.Sleep(ctx, interval); err != nil {
			return err
		}
	}
}

// pass browses every interface concurrently and returns one Attached event
// per instance seen, in interface then discovery order.
func (m *BrowseMonitor) pass(ctx context.Context, log *slog.Logger) []Event {
	ifnames, err := m.interfaces()
	if err != nil {
		log.Debug("discovery: list interfaces", "err", err)
		return nil
	}
	browse := m.Browse
	if browse == nil {
		browse = mdns.Browse
	}
	timeout := m.BrowseTimeout
	if timeout <= 0 {
		timeout = mdns.DefaultBrowseTimeout
	}
	results := make([][]mdns.Instance, len(ifnames))
	var wg sync.WaitGroup
	for i, name := range ifnames {
		wg.Go(func() {
			var err error
			results[i], err = browse(ctx, mdns.BrowseConfig{Interface: name, Service: m.Service, Timeout: timeout})
			if err != nil && ctx.Err() == nil {
				log.Debug("discovery: browse", "interface", name, "service", m.Service, "err", err)
			}
		})
	}
	wg.Wait()
	var out []Event
	for i, list := range results {
		for _, in := range list {
			addr, ok := pickAddr(in.Addrs, ifnames[i], false)
			if !ok {
				continue
			}
			e := Event{
				Kind: Attached, Source: m.source(), Conn: ConnWiFi,
				Addr: netip.AddrPortFrom(addr, in.Port), Addrs: in.Addrs, Interface: ifnames[i],
				Instance: in.Name, Text: in.Text,
			}
			if e.Source == SourceMobdev2 {
				// "<wifi-mac>@<suffix>" (pymobiledevice3 get_mobdev2_lockdowns).
				if mac, _, ok := strings.Cut(in.Name, "@"); ok {
					e.WiFiMAC = mac
				}
			}
			out = append(out, e)
		}
	}
	return out
}

func (m *BrowseMonitor) interfaces() ([]string, error) {
	if m.Interfaces != nil {
		return m.Interfaces()
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ifi := range ifs {
		if candidate(ifi.Name, ifi.Flags, m.Ignore) {
			out = append(out, ifi.Name)
		}
	}
	return out, nil
}
