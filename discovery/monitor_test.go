package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iosmux/iosmux/discovery/mdns"
	"github.com/iosmux/iosmux/internal/retry"
)

type fakeLinks struct{ ch chan []Link }

func (f *fakeLinks) Watch(ctx context.Context, changed func([]Link)) error {
	for {
		select {
		case l := <-f.ch:
			changed(l)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// fakeMDNS answers browses from a table; a silent interface lets the whole
// timeout pass, as a real browse does.
type fakeMDNS struct {
	mu      sync.Mutex
	answers map[string][]mdns.Instance // by interface
	calls   []string                   // "<seconds since start> <interface> <service>"
	start   time.Time
}

func (f *fakeMDNS) set(ifname string, in ...mdns.Instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answers == nil {
		f.answers = map[string][]mdns.Instance{}
	}
	f.answers[ifname] = in
}

func (f *fakeMDNS) browse(ctx context.Context, cfg mdns.BrowseConfig) ([]mdns.Instance, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("%v %s %s", time.Since(f.start), cfg.Interface, cfg.Service))
	ans := f.answers[cfg.Interface]
	f.mu.Unlock()
	if len(ans) > 0 && cfg.MaxInstances > 0 {
		return ans, nil // early return: complete instances arrived at once
	}
	select {
	case <-time.After(cfg.Timeout):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return ans, nil
}

func (f *fakeMDNS) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	// Concurrent browses append in any order: sort by time, then text.
	slices.SortFunc(c, func(a, b string) int {
		da, _ := time.ParseDuration(strings.Fields(a)[0])
		db, _ := time.ParseDuration(strings.Fields(b)[0])
		if da != db {
			return int(da - db)
		}
		return strings.Compare(a, b)
	})
	return c
}

// recorder collects emitted events.
type recorder struct {
	mu  sync.Mutex
	evs []Event
}

func (r *recorder) emit(e Event) { r.mu.Lock(); r.evs = append(r.evs, e); r.mu.Unlock() }

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		out = append(out, fmt.Sprintf("%s %s %s %s %s", e.Kind, e.Source, e.UDID, e.Addr, e.Interface))
	}
	r.evs = nil
	return out
}

func expect(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

var phone = mdns.Instance{Name: "iPhone", Service: "_remoted._tcp.local.", Host: "iPhone.local",
	Addrs: []netip.Addr{netip.MustParseAddr("169.254.3.4"), netip.MustParseAddr("fe80::2")}}

func TestNCMMonitor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		links := &fakeLinks{ch: make(chan []Link)}
		fm := &fakeMDNS{start: time.Now()}
		rec := &recorder{}
		var identified atomic.Int32
		m := &NCMMonitor{
			Links: links, Browse: fm.browse, Rescan: 30 * time.Second,
			Backoff: retry.Backoff{Min: time.Second, Max: 8 * time.Second, Jitter: -1},
			Identify: func(ctx context.Context, e Event) (string, error) {
				identified.Add(1)
				if e.Addr.Port() != RSDPort || e.Addr.Addr().Zone() != e.Interface {
					return "", fmt.Errorf("unexpected address %v", e.Addr)
				}
				return "UDID-" + e.Interface, nil
			},
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- m.Run(ctx, rec.emit) }()

		ll := func(name string, idx int) Link {
			return Link{Name: name, Index: idx, Addr: netip.MustParseAddr("fe80::1").WithZone(name)}
		}
		// A device link whose remoted answers at once.
		fm.set("enx1", phone)
		links.ch <- []Link{ll("enx1", 5)}
		synctest.Wait()
		expect(t, "attach", rec.take(), []string{"attached ncm UDID-enx1 [fe80::2%enx1]:58783 enx1"})
		expect(t, "browses", fm.takeCalls(), []string{"0s enx1 _remoted._tcp"})

		// A second link stays silent: browsed after 3 s + 1 s, 3 s + 2 s, …
		links.ch <- []Link{ll("enx1", 5), ll("enx2", 6)}
		time.Sleep(20 * time.Second)
		synctest.Wait()
		expect(t, "silent link", fm.takeCalls(), []string{"0s enx2 _remoted._tcp", "4s enx2 _remoted._tcp", "9s enx2 _remoted._tcp", "16s enx2 _remoted._tcp"})
		// Its device starts answering: found on the next try (16 s + 3 s + 8 s).
		fm.set("enx2", phone)
		time.Sleep(8 * time.Second)
		synctest.Wait()
		expect(t, "late attach", rec.take(), []string{"attached ncm UDID-enx2 [fe80::2%enx2]:58783 enx2"})
		expect(t, "browses", fm.takeCalls(), []string{"27s enx2 _remoted._tcp"})

		// The forced rescan (30 s) browses every link; nothing changed, so
		// nothing is reported.
		time.Sleep(4 * time.Second)
		synctest.Wait()
		expect(t, "rescan", fm.takeCalls(), []string{"30s enx1 _remoted._tcp", "30s enx2 _remoted._tcp"})
		expect(t, "rescan events", rec.take(), nil)

		// Unplugged: the link goes away, the device with it.
		links.ch <- []Link{ll("enx2", 6)}
		synctest.Wait()
		expect(t, "detach", rec.take(), []string{"detached ncm UDID-enx1 [fe80::2%enx1]:58783 enx1"})

		// A link whose address changed is a new link.
		moved := ll("enx2", 6)
		moved.Addr = netip.MustParseAddr("fe80::9").WithZone("enx2")
		links.ch <- []Link{moved}
		synctest.Wait()
		expect(t, "readdress", rec.take(), []string{
			"detached ncm UDID-enx2 [fe80::2%enx2]:58783 enx2",
			"attached ncm UDID-enx2 [fe80::2%enx2]:58783 enx2",
		})
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
		if n := identified.Load(); n != 3 {
			t.Errorf("identified %d times, want 3", n)
		}
	})
}

func TestNCMIdentifyFailureRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		links := &fakeLinks{ch: make(chan []Link)}
		fm := &fakeMDNS{start: time.Now()}
		fm.set("enx1", phone)
		rec := &recorder{}
		var fail atomic.Bool
		fail.Store(true)
		m := &NCMMonitor{
			Links: links, Browse: fm.browse, Backoff: retry.Backoff{Min: time.Second, Jitter: -1},
			Identify: func(context.Context, Event) (string, error) {
				if fail.Load() {
					return "", errors.New("rsd: connection refused")
				}
				return "U", nil
			},
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go m.Run(ctx, rec.emit)
		links.ch <- []Link{{Name: "enx1", Index: 1, Addr: netip.MustParseAddr("fe80::1%enx1")}}
		synctest.Wait()
		expect(t, "not identified", rec.take(), nil)
		fail.Store(false)
		time.Sleep(time.Second)
		synctest.Wait()
		expect(t, "identified on retry", rec.take(), []string{"attached ncm U [fe80::2%enx1]:58783 enx1"})
		cancel()
		synctest.Wait()
	})
}

func TestBrowseMonitor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fm := &fakeMDNS{start: time.Now()}
		dev := mdns.Instance{Name: "a0:b1:c2:d3:e4:f5@fe80::a2b1:c2ff:fed3:e4f5", Port: 62078,
			Text:  []string{"identifier=ID-1", "authTag=x"},
			Addrs: []netip.Addr{netip.MustParseAddr("fe80::a2b1:c2ff:fed3:e4f5"), netip.MustParseAddr("192.168.1.20")}}
		stranger := mdns.Instance{Name: "stranger@x", Port: 62078, Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.99")}}
		fm.set("wlan0", dev, stranger)
		rec := &recorder{}
		var macs []string
		m := NewMobdev2Monitor()
		m.Interfaces = func() ([]string, error) { return []string{"wlan0"}, nil }
		m.Browse = fm.browse
		m.Identify = func(_ context.Context, e Event) (string, error) {
			macs = append(macs, e.WiFiMAC)
			if e.WiFiMAC != "a0:b1:c2:d3:e4:f5" {
				return "", errors.New("no pair record")
			}
			return "UDID-1", nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- m.Run(ctx, rec.emit) }()

		time.Sleep(time.Second) // within the first 3 s browse
		synctest.Wait()
		expect(t, "first pass", rec.take(), nil)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		// IPv4 is preferred on Wi-Fi; the stranger has no record.
		expect(t, "after first pass", rec.take(), []string{"attached mobdev2 UDID-1 192.168.1.20:62078 wlan0"})

		// The device leaves: Detached after three passes without it
		// (passes end at 3, 11, 19, 27, 35 s: missed at 11, 19, 27).
		fm.set("wlan0")
		time.Sleep(23 * time.Second) // t = 26 s
		synctest.Wait()
		expect(t, "two misses", rec.take(), nil)
		time.Sleep(time.Second) // t = 27 s
		synctest.Wait()
		expect(t, "third miss", rec.take(), []string{"detached mobdev2 UDID-1 192.168.1.20:62078 wlan0"})
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
		// Identify ran once per new sighting of each instance: the device
		// once, the stranger on every pass it was seen (first pass only).
		if !reflect.DeepEqual(macs, []string{"a0:b1:c2:d3:e4:f5", "stranger"}) {
			t.Errorf("identify calls: %q", macs)
		}
	})
}

func TestRunRestartsFailedMonitor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		runs := 0
		m := monitorFunc(func(ctx context.Context, emit func(Event)) error {
			runs++
			emit(muxEvent(uint32(runs), "U", "USB"))
			return errors.New("usbmuxd: connection refused")
		})
		rec := &recorder{}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Waits after failures: 2 s, 4 s (±20 %) → 3 runs within 5 s at most,
		// at least 2.
		if err := Run(ctx, nil, rec.emit, m); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run = %v", err)
		}
		if runs < 2 || runs > 3 {
			t.Errorf("monitor ran %d times in 5 s", runs)
		}
		if got := len(rec.take()); got != runs {
			t.Errorf("%d events for %d runs", got, runs)
		}
	})
}

type monitorFunc func(ctx context.Context, emit func(Event)) error

func (f monitorFunc) Run(ctx context.Context, emit func(Event)) error { return f(ctx, emit) }
