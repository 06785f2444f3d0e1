package tunneld

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/tunnel"
)

// fakeLink is a running tunnel that ends when told to or when closed.
type fakeLink struct {
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	err    error
	closed atomic.Bool
	sent   uint64
}

func newFakeLink(sent uint64) *fakeLink { return &fakeLink{done: make(chan struct{}), sent: sent} }

func (l *fakeLink) Done() <-chan struct{} { return l.done }
func (l *fakeLink) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
func (l *fakeLink) Close() error {
	l.closed.Store(true)
	l.die(errors.New("closed"))
	return nil
}
func (l *fakeLink) Stats() tunnel.Stats {
	return tunnel.Stats{SentBytes: l.sent, ReceivedBytes: 2 * l.sent}
}
func (l *fakeLink) die(err error) {
	l.once.Do(func() {
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		close(l.done)
	})
}

// fakeEst answers Establish per UDID from a script: fail the first fails
// attempts, then succeed; block, when set, holds attempts until released.
type fakeEst struct {
	mu       sync.Mutex
	fails    map[string]int
	block    map[string]chan struct{}
	attempts []attemptRecord
	links    []*fakeLink
	reported map[string]string // discovered UDID → UDID the handshake reports
	failErr  map[string]error  // path name → error of its scripted failures
	start    time.Time
}

type attemptRecord struct {
	udid string
	path string
	at   time.Duration
}

func newFakeEst() *fakeEst {
	return &fakeEst{fails: map[string]int{}, block: map[string]chan struct{}{}, reported: map[string]string{},
		failErr: map[string]error{}, start: time.Now()}
}

func (f *fakeEst) Establish(ctx context.Context, ev discovery.Event) (*established, error) {
	f.mu.Lock()
	f.attempts = append(f.attempts, attemptRecord{ev.UDID, string(pathOf(ev)), time.Since(f.start)})
	block := f.block[ev.UDID]
	fail := f.fails[ev.UDID] > 0
	if fail {
		f.fails[ev.UDID]--
	}
	udid := f.reported[ev.UDID]
	failErr := f.failErr[string(pathOf(ev))]
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail {
		if failErr == nil {
			failErr = errors.New("scripted failure")
		}
		return nil, &establish.Error{Device: ev.UDID, Step: establish.StepLockdown, Err: failErr}
	}
	l := newFakeLink(100)
	f.mu.Lock()
	f.links = append(f.links, l)
	n := len(f.links)
	f.mu.Unlock()
	return &established{
		UDID: udid, Interface: fmt.Sprintf("tun%d", n-1), Protocol: "tcp", Link: l,
		Params: tunnel.Params{ServerAddress: netip.MustParseAddr(fmt.Sprintf("fd00::%d:1", n)), ServerRSDPort: uint16(50000 + n)},
	}, nil
}

func (f *fakeEst) setBlock(udid string, ch chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.block[udid] = ch
}

func (f *fakeEst) getBlock(udid string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.block[udid]
}

func (f *fakeEst) setFails(udid string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails[udid] = n
}

func (f *fakeEst) setReported(udid, as string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reported[udid] = as
}

func (f *fakeEst) attemptTimes(udid string) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, a := range f.attempts {
		if a.udid == udid {
			out = append(out, a.at)
		}
	}
	return out
}

func (f *fakeEst) link(i int) *fakeLink {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.links[i]
}

func (f *fakeEst) nLinks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.links)
}

func usbEvent(kind discovery.Kind, udid string, id uint32) discovery.Event {
	return discovery.Event{Kind: kind, Source: discovery.SourceUsbmux, Conn: discovery.ConnUsbmux, UDID: udid,
		DeviceID: id, ConnectionType: "USB", ProductID: 0x12a8}
}

func ncmEvent(kind discovery.Kind, udid string) discovery.Event {
	return discovery.Event{Kind: kind, Source: discovery.SourceNCM, Conn: discovery.ConnUSBNCM, UDID: udid,
		Addr: netip.MustParseAddrPort("[fe80::1%enx1]:58783"), Interface: "enx1", Instance: "iPhone"}
}

// noJitter is a deterministic schedule: 1 s, 2 s, 4 s, … up to 8 s.
var noJitter = retry.Backoff{Min: time.Second, Max: 8 * time.Second, Jitter: -1}

func newTestManager(t *testing.T, est builder, cfg managerConfig) (*manager, *atomic.Int64) {
	t.Helper()
	var changes atomic.Int64
	cfg.Establisher = est
	cfg.OnChange = func() { changes.Add(1) }
	m := newManager(cfg)
	t.Cleanup(func() { m.Close() })
	return m, &changes
}

const udidA = "00008030-001A2B3C3C02802E"

func TestManagerListsEstablishedTunnel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		m, changes := newTestManager(t, est, managerConfig{Backoff: noJitter})
		undashed := "00008030001A2B3C3C02802E"
		est.setReported(undashed, udidA)
		m.Apply(usbEvent(discovery.Attached, undashed, 3))
		synctest.Wait()
		got := m.Tunnels()
		if len(got) != 1 {
			t.Fatalf("got %d tunnels, want 1", len(got))
		}
		e := got[0]
		if e.UDID != udidA || e.Key != "usbmux-"+undashed+"-USB" || e.Interface != "tun0" || e.RSDPort != 50001 ||
			e.Address.String() != "fd00::1:1" || e.Path.DeviceID != 3 || e.Protocol != "tcp" {
			t.Errorf("entry = %+v", e)
		}
		if changes.Load() != 1 {
			t.Errorf("OnChange called %d times, want 1", changes.Load())
		}
		if !m.Settled() {
			t.Error("not settled after the first attempt")
		}
		st := m.Stats()
		if st.Tunnels != 1 || st.ByPath["usbmux-usb"] != 1 || st.Sent != 100 || st.Received != 200 {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestManagerDetachTearsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		synctest.Wait()
		m.Apply(usbEvent(discovery.Detached, udidA, 3))
		if n := len(m.Tunnels()); n != 0 {
			t.Fatalf("%d tunnels listed after Detached", n)
		}
		synctest.Wait()
		if !est.link(0).closed.Load() {
			t.Error("link not closed after Detached")
		}
		st := m.Stats()
		if st.Tunnels != 0 || st.Sent != 100 {
			t.Errorf("stats after teardown = %+v, want bytes kept", st)
		}
		// Forgotten: a later Attached is a fresh start (no back-off).
		time.Sleep(time.Millisecond)
		m.Apply(usbEvent(discovery.Attached, udidA, 4))
		synctest.Wait()
		if n := len(m.Tunnels()); n != 1 {
			t.Fatalf("%d tunnels after replug, want 1", n)
		}
		if st := m.Stats(); st.Reconnects != 1 {
			t.Errorf("reconnects = %d, want 1", st.Reconnects)
		}
	})
}

func TestManagerNeverListsDeadTunnel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		synctest.Wait()
		// The link dies; before the manager has even noticed, it is gone
		// from the listing.
		est.link(0).die(tunnel.ErrDead)
		if n := len(m.Tunnels()); n != 0 {
			t.Fatalf("dead tunnel listed")
		}
		synctest.Wait()
		if got := m.Stats().Errors["tunnel_dead"]; got != 1 {
			t.Errorf("tunnel_dead errors = %d, want 1", got)
		}
		// Rebuilt after the first back-off step (1 s) while still attached.
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if n := len(m.Tunnels()); n != 0 {
			t.Fatalf("rebuilt before its back-off")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := len(m.Tunnels()); n != 1 {
			t.Fatalf("%d tunnels 1 s after death, want 1", n)
		}
		if st := m.Stats(); st.Reconnects != 1 {
			t.Errorf("reconnects = %d, want 1", st.Reconnects)
		}
	})
}

func TestManagerBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		est.setFails(udidA, 5)
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		time.Sleep(time.Minute)
		synctest.Wait()
		want := []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second, 23 * time.Second}
		got := est.attemptTimes(udidA)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}
		if n := len(m.Tunnels()); n != 1 {
			t.Errorf("%d tunnels after the sixth attempt, want 1", n)
		}
		if e := m.Stats().Errors["lockdown"]; e != 5 {
			t.Errorf("lockdown errors = %d, want 5", e)
		}
	})
}

func TestManagerBackoffJitterSpreads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		const n = 20
		for i := range n {
			est.setFails(fmt.Sprintf("dev-%02d", i), 1)
		}
		m, _ := newTestManager(t, est, managerConfig{Backoff: retry.Backoff{Min: 10 * time.Second, Max: time.Minute}})
		for i := range n {
			m.Apply(usbEvent(discovery.Attached, fmt.Sprintf("dev-%02d", i), uint32(i+1)))
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		seen := map[time.Duration]bool{}
		for i := range n {
			at := est.attemptTimes(fmt.Sprintf("dev-%02d", i))
			if len(at) != 2 {
				t.Fatalf("device %d: %d attempts, want 2", i, len(at))
			}
			if at[1] < 8*time.Second || at[1] > 12*time.Second {
				t.Errorf("device %d retried at %v, want 10 s ± 20 %%", i, at[1])
			}
			seen[at[1]] = true
		}
		if len(seen) < n/2 {
			t.Errorf("retries fell on %d distinct instants for %d devices: no jitter", len(seen), n)
		}
	})
}

func TestManagerAttachedRetriesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		est.setFails(udidA, 4)
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		time.Sleep(7500 * time.Millisecond) // attempts at 0, 1, 3, 7 s; next due at 15 s
		synctest.Wait()
		if got := len(est.attemptTimes(udidA)); got != 4 {
			t.Fatalf("%d attempts, want 4", got)
		}
		// Replug: the device answers again, so it is tried now, not at 15 s.
		m.Apply(usbEvent(discovery.Detached, udidA, 3))
		m.Apply(usbEvent(discovery.Attached, udidA, 4))
		synctest.Wait()
		at := est.attemptTimes(udidA)
		if len(at) != 5 || at[4] != 7500*time.Millisecond {
			t.Fatalf("attempts at %v, want the fifth at 7.5 s", at)
		}
		if n := len(m.Tunnels()); n != 1 {
			t.Errorf("%d tunnels, want 1", n)
		}
	})
}

// TestManagerUnusedPathDetachKeepsBackoff: losing a path the device was not
// being reached over does not cut its back-off short.
func TestManagerUnusedPathDetachKeepsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		est.setFails(udidA, 3)
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3)) // attempt at 0, retry at 1 s
		time.Sleep(500 * time.Millisecond)
		m.Apply(ncmEvent(discovery.Attached, udidA)) // answers again: attempt at 0.5 s, retry at 1.5 s
		time.Sleep(500 * time.Millisecond)
		m.Apply(ncmEvent(discovery.Detached, udidA))
		time.Sleep(3 * time.Second)
		synctest.Wait()
		want := []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond, 3500 * time.Millisecond}
		if got := est.attemptTimes(udidA); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}
	})
}

func TestManagerFailsOverToNextPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		m.Apply(ncmEvent(discovery.Attached, udidA))
		synctest.Wait()
		// A better path appearing later does not replace a working tunnel.
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		synctest.Wait()
		ts := m.Tunnels()
		if len(ts) != 1 || pathOf(ts[0].Path) != "usb-ncm" || ts[0].Key != "fe80::1%enx1" {
			t.Fatalf("tunnels = %+v, want the NCM one", ts)
		}
		m.Apply(ncmEvent(discovery.Detached, udidA))
		synctest.Wait()
		ts = m.Tunnels()
		if len(ts) != 1 || pathOf(ts[0].Path) != "usbmux-usb" {
			t.Fatalf("tunnels after NCM loss = %+v, want usbmux", ts)
		}
		if !est.link(0).closed.Load() {
			t.Error("NCM link not closed")
		}
	})
}

func TestManagerStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		ctx := context.Background()
		if _, err := m.Start(ctx, startRequest{UDID: udidA}); !errors.Is(err, errUnknownDevice) {
			t.Errorf("unknown device: %v, want errUnknownDevice", err)
		}
		est.setFails(udidA, 1)
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		synctest.Wait() // first attempt failed; next in 1 s
		onlyNCM := func(ev discovery.Event) bool { return ev.Source == discovery.SourceNCM }
		if _, err := m.Start(ctx, startRequest{UDID: udidA, Match: onlyNCM}); !errors.Is(err, errNoPath) {
			t.Errorf("no NCM path: %v, want errNoPath", err)
		}
		// Start does not wait out the back-off.
		e, err := m.Start(ctx, startRequest{UDID: "00008030001a2b3c3c02802e"})
		if err != nil || e.UDID != udidA {
			t.Fatalf("Start = %+v, %v", e, err)
		}
		if at := est.attemptTimes(udidA); len(at) != 2 || at[1] != 0 {
			t.Errorf("attempts at %v, want two at 0", at)
		}
		// Already up: returned as is.
		e2, err := m.Start(ctx, startRequest{UDID: udidA})
		if err != nil || e2.ID != e.ID {
			t.Errorf("second Start = %+v, %v", e2, err)
		}
		// A failing attempt is reported; a blocked one honours ctx.
		const udidB = "00008030-0000000000000002"
		est.setFails(udidB, 1)
		est.setBlock(udidB, make(chan struct{}))
		m.Apply(usbEvent(discovery.Attached, udidB, 5))
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		if _, err := m.Start(cctx, startRequest{UDID: udidB}); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("blocked Start: %v, want deadline", err)
		}
		cancel()
		res := make(chan error, 1)
		go func() { _, err := m.Start(ctx, startRequest{UDID: udidB}); res <- err }()
		synctest.Wait()
		close(est.getBlock(udidB))
		var se *establish.Error
		if err := <-res; !errors.As(err, &se) || se.Step != establish.StepLockdown {
			t.Errorf("failing Start: %v, want the lockdown *establish.Error", err)
		}
	})
}

func TestManagerCancelAndClear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter, CancelHold: 2 * time.Second})
		const udidB = "00008030-0000000000000002"
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		m.Apply(usbEvent(discovery.Attached, udidB, 4))
		synctest.Wait()
		if n := m.Cancel("00008030001A2B3C3C02802E"); n != 0 {
			t.Errorf("Cancel matched the undashed form (%d): pymobiledevice3 matches exactly", n)
		}
		if n := m.Cancel(udidA); n != 1 {
			t.Fatalf("Cancel closed %d tunnels, want 1", n)
		}
		if ts := m.Tunnels(); len(ts) != 1 || ts[0].UDID != udidB {
			t.Fatalf("after Cancel: %+v", ts)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(m.Tunnels()); n != 2 {
			t.Fatalf("%d tunnels after the cancel hold, want 2", n)
		}
		// Clear abandons an attempt under way too.
		m.Apply(usbEvent(discovery.Detached, udidB, 4))
		est.setBlock(udidB, make(chan struct{}))
		m.Apply(usbEvent(discovery.Attached, udidB, 6))
		synctest.Wait()
		m.Clear()
		if n := len(m.Tunnels()); n != 0 {
			t.Fatalf("%d tunnels after Clear", n)
		}
		synctest.Wait()
		close(est.getBlock(udidB))
		est.setBlock(udidB, nil)
		synctest.Wait()
		if n := len(m.Tunnels()); n != 0 {
			t.Fatalf("the abandoned attempt's tunnel was listed")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(m.Tunnels()); n != 2 {
			t.Fatalf("%d tunnels after the clear hold, want 2", n)
		}
		for i := range est.nLinks() - 2 {
			if l := est.link(i); !l.closed.Load() {
				t.Errorf("link %d not closed", i)
			}
		}
	})
}

func TestManagerDuplicateIdentityBailsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		synctest.Wait()
		// A second sighting under another name whose handshake reports
		// the same device: the fresh tunnel is closed, never listed.
		est.setReported("other", udidA)
		m.Apply(usbEvent(discovery.Attached, "other", 9))
		synctest.Wait()
		if n := len(m.Tunnels()); n != 1 {
			t.Errorf("%d tunnels, want 1", n)
		}
		if !est.link(1).closed.Load() {
			t.Error("duplicate tunnel left open")
		}
		if e := m.Stats().Errors["duplicate"]; e != 1 {
			t.Errorf("duplicate errors = %d", e)
		}
	})
}

func TestManagerCloseTearsDownEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		est.setBlock("blocked", make(chan struct{}))
		m := newManager(managerConfig{Establisher: est, Backoff: noJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		m.Apply(usbEvent(discovery.Attached, "blocked", 4))
		synctest.Wait()
		res := make(chan error, 1)
		go func() { _, err := m.Start(context.Background(), startRequest{UDID: "blocked"}); res <- err }()
		synctest.Wait()
		m.Close()
		m.Close()
		if !est.link(0).closed.Load() {
			t.Error("tunnel not closed by Close")
		}
		if err := <-res; !errors.Is(err, errAttemptCanceled) && !errors.Is(err, errManagerClosed) {
			t.Errorf("pending Start: %v", err)
		}
		m.Apply(usbEvent(discovery.Attached, "late", 5)) // dropped, no hang
		if _, err := m.Start(context.Background(), startRequest{UDID: udidA}); !errors.Is(err, errManagerClosed) {
			t.Errorf("Start after Close: %v", err)
		}
		// synctest.Test fails if any goroutine of the bubble is left.
	})
}

// TestManagerAttachDetachCycles runs 1000 plug cycles of 8 devices in fake
// time: every tunnel is closed, nothing stays listed, the counters add up,
// and (synctest) no goroutine outlives the manager.
func TestManagerAttachDetachCycles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		m := newManager(managerConfig{Establisher: est, Backoff: noJitter})
		const devices, cycles = 8, 1000
		id := uint32(0)
		for c := range cycles {
			ids := make([]uint32, devices)
			for i := range devices {
				id++
				ids[i] = id
				m.Apply(usbEvent(discovery.Attached, fmt.Sprintf("dev-%d", i), id))
			}
			synctest.Wait()
			if n := len(m.Tunnels()); n != devices {
				t.Fatalf("cycle %d: %d tunnels, want %d", c, n, devices)
			}
			if c%3 == 0 {
				est.link(est.nLinks() - 1).die(errors.New("transport EOF"))
			}
			for i := range devices {
				m.Apply(usbEvent(discovery.Detached, fmt.Sprintf("dev-%d", i), ids[i]))
			}
			synctest.Wait()
			if n := len(m.Tunnels()); n != 0 {
				t.Fatalf("cycle %d: %d tunnels after detach", c, n)
			}
			time.Sleep(time.Second)
		}
		m.Close()
		for i := range est.nLinks() {
			if !est.link(i).closed.Load() {
				t.Fatalf("link %d never closed", i)
			}
		}
		st := m.Stats()
		if st.Reconnects != devices*(cycles-1) || st.Sent != devices*cycles*100 || st.Tunnels != 0 {
			t.Errorf("stats = %+v", st)
		}
		if len(m.devices) != 0 {
			t.Errorf("%d devices remembered after all were detached", len(m.devices))
		}
	})
}
