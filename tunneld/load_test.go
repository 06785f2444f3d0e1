package tunneld_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tunneld"
)

var (
	cycles   = flag.Int("cycles", 100, "attach/detach cycles of TestAttachDetachCycles (docs/perf.md uses 1000)")
	flapFor  = flag.Duration("flap", 3*time.Second, "how long TestConcurrentClients flaps devices")
	clientsN = flag.Int("clients", 200, "concurrent API clients of TestConcurrentClients")
)

// rssKiB reads VmRSS of this process (Linux).
func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return -1
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// TestAttachDetachCycles unplugs and replugs devices -cycles times, each
// time waiting for the tunnel to leave the listing and to come back. At
// the end no goroutine or descriptor may be left (testkit.CheckLeaks), and
// goroutines, descriptors and RSS are logged after a warm-up and at the
// end (docs/perf.md).
func TestAttachDetachCycles(t *testing.T) {
	testkit.CheckLeaks(t)
	f := fleet(t, 4, "")
	r := daemon(t, f, nil)
	waitFor(t, "4 tunnels", func() bool { return len(listing(t, r)) == 4 })
	devs := f.Devices()
	var g0, fd0 int
	var rss0 int64
	warm := min(*cycles/10, 50)
	for i := range *cycles {
		if i == warm {
			runtime.GC()
			g0, fd0, rss0 = runtime.NumGoroutine(), openFDs(), rssKiB()
		}
		if i > warm && i%(*cycles/4) == 0 {
			runtime.GC()
			t.Logf("cycle %d: goroutines %d, fds %d, RSS %d KiB", i, runtime.NumGoroutine(), openFDs(), rssKiB())
		}
		d := devs[i%len(devs)]
		if err := d.Unplug(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "tunnel to leave", func() bool { return !listed(t, r, d.UDID()) })
		if err := d.Replug(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "tunnel to come back", func() bool { return listed(t, r, d.UDID()) })
	}
	waitFor(t, "4 tunnels", func() bool { return len(listing(t, r)) == 4 })
	runtime.GC()
	g1, fd1, rss1 := runtime.NumGoroutine(), openFDs(), rssKiB()
	t.Logf("%d cycles: goroutines %d → %d, fds %d → %d, RSS %d → %d KiB (after %d warm-up cycles)", *cycles, g0, g1, fd0, fd1, rss0, rss1, warm)
	if g1 > g0+8 || fd1 > fd0+8 {
		t.Errorf("goroutines %d → %d or descriptors %d → %d grew with the cycles", g0, g1, fd0, fd1)
	}
	_, m := get(t, r.url(tunneld.APIPMD3, "/metrics"))
	if !strings.Contains(string(m), fmt.Sprintf("iosmux_tunnel_reconnects_total %d", *cycles)) {
		t.Errorf("reconnect counter does not say %d:\n%s", *cycles, m)
	}
}

// TestConcurrentClients runs -clients API clients against all three APIs
// while devices are unplugged, replugged and rebooted: every reply must be
// a 200 with a well-formed listing. Latency percentiles are logged.
func TestConcurrentClients(t *testing.T) {
	f := fleet(t, 8, "")
	r := daemon(t, f, nil)
	waitFor(t, "8 tunnels", func() bool { return len(listing(t, r)) == 8 })

	stop := make(chan struct{})
	var flaps atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			d := f.Devices()[rng.IntN(len(f.Devices()))]
			switch rng.IntN(3) {
			case 0:
				d.Unplug()
				time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
				d.Replug()
			case 1:
				d.Reboot(time.Duration(rng.IntN(100)) * time.Millisecond)
			default:
				time.Sleep(20 * time.Millisecond)
			}
			flaps.Add(1)
		}
	})

	paths := []struct{ api, path string }{
		{tunneld.APIPMD3, "/"},
		{tunneld.APIPMD3, "/hello"},
		{tunneld.APIGoIOS, "/tunnels"},
		{tunneld.APIAppium, "/remotexpc/tunnels"},
		{tunneld.APIPMD3, "/metrics"},
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs []string
	)
	deadline := time.Now().Add(*flapFor)
	for c := range *clientsN {
		wg.Go(func() {
			var mine []time.Duration
			for i := 0; time.Now().Before(deadline); i++ {
				p := paths[(c+i)%len(paths)]
				start := time.Now()
				resp, err := client.Get(r.url(p.api, p.path))
				var b []byte
				if err == nil {
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				mine = append(mine, time.Since(start))
				if msg := checkReply(p.path, resp, b, err); msg != "" {
					mu.Lock()
					errs = append(errs, msg)
					mu.Unlock()
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	time.Sleep(time.Until(deadline))
	close(stop)
	wg.Wait()
	for _, e := range errs[:min(len(errs), 10)] {
		t.Error(e)
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests failed", len(errs), len(lats))
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration { return lats[int(p*float64(len(lats)-1))] }
	t.Logf("%d clients, %d requests in %v while %d device faults: p50 %v, p99 %v, max %v", *clientsN, len(lats), *flapFor,
		flaps.Load(), pct(0.5).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), lats[len(lats)-1].Round(time.Microsecond))
}

// checkReply returns what is wrong with one reply, "" if nothing.
func checkReply(path string, resp *http.Response, b []byte, err error) string {
	switch {
	case err != nil:
		return fmt.Sprintf("GET %s: %v", path, err)
	case resp.StatusCode != 200:
		return fmt.Sprintf("GET %s: %d %s", path, resp.StatusCode, b)
	case path == "/metrics":
		if !strings.Contains(string(b), "iosmux_tunnels") {
			return "metrics without iosmux_tunnels"
		}
		return ""
	}
	switch path {
	case "/":
		var m map[string][]pmd3Entry
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Sprintf("GET /: %v: %s", err, b)
		}
		for udid, es := range m {
			if len(es) != 1 || es[0].Address == "" || es[0].Port == 0 || !strings.HasPrefix(es[0].Interface, "usbmux-") {
				return fmt.Sprintf("GET /: %s: %+v", udid, es)
			}
		}
	case "/tunnels":
		var ts []goiosTunnel
		if err := json.Unmarshal(b, &ts); err != nil {
			return fmt.Sprintf("GET /tunnels: %v: %s", err, b)
		}
	default:
		if !json.Valid(b) {
			return fmt.Sprintf("GET %s: not JSON: %s", path, b)
		}
	}
	return ""
}

// BenchmarkAttachToListed measures the time from a device being plugged in
// (usbmuxd Attached) to its tunnel being listed by GET /, with 1, 16 and 64
// simulated devices attached, in userspace mode. It reports the process RSS
// (simulator included) with every tunnel up, and the simulator's own RSS
// before tunneld started. From /metrics it reports the mean of the daemon's
// own set-up time (ms-attempt: the attempt's start to the listing,
// iosmux_tunnel_setup_seconds) and of each step
// (iosmux_tunnel_setup_step_seconds) over the timed set-ups; the rest of
// ns/op is usbmuxd's Attached event reaching the manager and up to 5 ms of
// polling GET /.
func BenchmarkAttachToListed(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			runtime.GC()
			f := fleet(b, n, "")
			runtime.GC()
			simRSS := rssKiB()
			start := time.Now()
			r := daemon(b, f, nil)
			waitFor(b, "every tunnel", func() bool { return len(listing(b, r)) == n })
			all := time.Since(start)
			runtime.GC()
			rss := rssKiB()
			devs := f.Devices()
			m0 := setUpMetrics(b, r)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				d := devs[i%n]
				if err := d.Unplug(); err != nil {
					b.Fatal(err)
				}
				waitFor(b, "tunnel to leave", func() bool { return !listed(b, r, d.UDID()) })
				b.StartTimer()
				if err := d.Replug(); err != nil {
					b.Fatal(err)
				}
				waitFor(b, "tunnel to come back", func() bool { return listed(b, r, d.UDID()) })
			}
			b.StopTimer()
			m1 := setUpMetrics(b, r)
			if n := m1.count[""] - m0.count[""]; n != float64(b.N) {
				b.Fatalf("/metrics counts %v set-ups for %d replugs", n, b.N)
			}
			for k := range m1.sum {
				switch {
				case m1.count[k] == m0.count[k]:
					// not a step of these set-ups (pairing at the start)
				case k == "":
					b.ReportMetric((m1.sum[k]-m0.sum[k])/float64(b.N)*1e3, "ms-attempt")
				default:
					b.ReportMetric((m1.sum[k]-m0.sum[k])/float64(b.N)*1e3, "ms-"+strings.ReplaceAll(k, " ", "-"))
				}
			}
			b.ReportMetric(float64(all.Milliseconds()), "ms-all-listed-at-start")
			b.ReportMetric(float64(rss)/1024, "MiB-RSS")
			b.ReportMetric(float64(simRSS)/1024, "MiB-RSS-sim-only")
		})
	}
}

// setUpSums are the set-up histograms' sums and counts from /metrics, by
// step; "" is the whole set-up (iosmux_tunnel_setup_seconds, all paths).
type setUpSums struct{ sum, count map[string]float64 }

var setUpLine = regexp.MustCompile(`^iosmux_tunnel_setup_(step_)?seconds_(sum|count)\{(?:path|step)="([^"]*)"\} (\S+)$`)

func setUpMetrics(t testing.TB, r *rig) setUpSums {
	t.Helper()
	_, b := get(t, r.url(tunneld.APIPMD3, "/metrics"))
	m := setUpSums{sum: map[string]float64{}, count: map[string]float64{}}
	for _, line := range strings.Split(string(b), "\n") {
		g := setUpLine.FindStringSubmatch(line)
		if g == nil {
			continue
		}
		v, err := strconv.ParseFloat(g[4], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		key := ""
		if g[1] != "" {
			key = g[3]
		}
		if g[2] == "sum" {
			m.sum[key] += v
		} else {
			m.count[key] += v
		}
	}
	return m
}
