package tunneld_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/netns"
	"github.com/iosmux/iosmux/internal/pace"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/usbmux"
)

// BenchmarkManyDevices: N simulated iPhones, each moving data at a paced
// rate through one tunneld, with the three parts in processes of their own
// so each one's CPU is measured apart:
//
//	sim      'iosmux sim --device-end kernel' (the cheap device end: each
//	         device's services on kernel sockets in a namespace of its own)
//	tunneld  'iosmux tunneld' on the sim's usbmuxd, kernel TUNs, in a
//	         network namespace the benchmark made (its TUNs stay off the
//	         host's interfaces)
//	clients  this process: one TCP connection per device, dialed inside
//	         tunneld's namespace through the device's tunnel to its byte
//	         sink (up: host→device) or byte source (down), paced per device
//	         by internal/pace
//
// For each fleet size (-many-devices) and per-device rate (-many-rates,
// MB/s) it reports the aggregate MB/s, how many devices held ≥ 95 % of their
// rate and the slowest one's share, for each process its CPU-s per GiB
// moved and its CPU share (100 = one CPU), their sum (total-cpu-s/GiB and
// total-cpu-share-%, 100 = every CPU of the host), and the whole host's
// busy share from /proc/stat (softirq work included, and anything else
// running on the machine). Rates go up until the fleet no
// longer holds 95 % of its aggregate: the host is saturated, and the
// higher rates are skipped. Linux, root. docs/perf.md quotes it:
//
//	go test -run '^$' -bench BenchmarkManyDevices -benchtime 1x -timeout 30m ./tunneld
func BenchmarkManyDevices(b *testing.B) {
	bin := buildIosmux(b)
	rates := parseInts(b, *manyRates)
	for _, n := range parseInts(b, *manyDevices) {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			env := startMany(b, bin, n)
			for _, dir := range strings.Split(*manyDirs, ",") {
				for _, rate := range rates {
					var held bool
					b.Run(fmt.Sprintf("%s/MBps=%d", dir, rate), func(b *testing.B) {
						for range b.N {
							held = env.window(b, dir, int64(rate)*1e6)
						}
					})
					if !held {
						break // saturated: higher rates say no more
					}
				}
			}
		})
	}
}

var (
	manyDevices = flag.String("many-devices", "16,64", "BenchmarkManyDevices: fleet sizes, comma separated")
	manyRates   = flag.String("many-rates", "40,100,200,400", "BenchmarkManyDevices: per-device rates in MB/s, ascending")
	manyDirs    = flag.String("many-dirs", "up,down", "BenchmarkManyDevices: directions (up: host→device sink, down: device source→host)")
	manyWindow  = flag.Duration("many-window", 10*time.Second, "BenchmarkManyDevices: how long each rate is measured")
	manyState   = flag.String("many-state", filepath.Join(os.TempDir(), "iosmux-many-devices"), "BenchmarkManyDevices: the simulated devices' state (their keys, made once) between runs")
	manyPerf    = flag.String("many-perf", "", "BenchmarkManyDevices: record perf(1) profiles of tunneld and the simulator during each window into `DIR`")
)

// buildIosmux builds the iosmux command once per run.
func buildIosmux(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("", "many-bin-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "iosmux")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/iosmux/iosmux/cmd/iosmux").CombinedOutput()
	if err != nil {
		b.Fatalf("building iosmux: %v\n%s", err, out)
	}
	return bin
}

func parseInts(b *testing.B, s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("%q: want positive integers, comma separated", s)
		}
		out = append(out, n)
	}
	return out
}

// manyEnv is a running sim and tunneld with every device's tunnel up.
type manyEnv struct {
	sim, tunneld *exec.Cmd
	ns           *netns.NS // tunneld's namespace, where the clients dial
	devs         []manyDevice
}

type manyDevice struct {
	udid         string
	sink, source string // [tunnel address]:port
}

func startMany(b *testing.B, bin string, n int) *manyEnv {
	b.Helper()
	tmp, err := os.MkdirTemp("", "many-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(tmp) })
	sock := filepath.Join(tmp, "usbmuxd")
	env := &manyEnv{}

	// The simulator, in this namespace (its device ends make their own).
	state := filepath.Join(*manyState, strconv.Itoa(n))
	env.sim = exec.Command(bin, "sim", "--count", strconv.Itoa(n), "--device-end", "kernel", "--socket", sock,
		"--simulate-state", state, "--control", "none", "--tss", "none", "--loopback=false")
	startChild(b, env.sim, filepath.Join(tmp, "sim.log"))
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: sock}})
	waitUntil(b, 10*time.Minute, fmt.Sprintf("%d devices in the simulator's usbmuxd", n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, err := mux.ListDevices(ctx)
		return err == nil && len(l) == n
	})

	// tunneld, in a namespace of its own with loopback up.
	env.ns, err = netns.New()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { env.ns.Close() })
	if err := env.ns.Do(func() error { return exec.Command("ip", "link", "set", "lo", "up").Run() }); err != nil {
		b.Fatal(err)
	}
	env.tunneld = exec.Command(bin, "tunneld", "--usbmux-address", "UNIX:"+sock, "--no-usb", "--no-wifi", "--no-mobdev2",
		"--api", "pmd3", "--host", "127.0.0.1", "--port", "49151",
		"--state-dir", filepath.Join(tmp, "state"), "--pair-records", filepath.Join(tmp, "records"))
	if err := env.ns.Do(func() error { startChild(b, env.tunneld, filepath.Join(tmp, "tunneld.log")); return nil }); err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: env.dial}}
	var list map[string][]pmd3Entry
	waitUntil(b, 10*time.Minute, fmt.Sprintf("%d tunnels listed by tunneld", n), func() bool {
		resp, err := hc.Get("http://127.0.0.1:49151/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		list = nil
		return json.NewDecoder(resp.Body).Decode(&list) == nil && len(list) == n
	})

	// Each device's byte services, from its trusted RSD.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for udid, es := range list {
		host := es[0].Address
		nc, err := env.dial(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(es[0].Port)))
		if err != nil {
			b.Fatalf("%s: trusted RSD: %v", udid, err)
		}
		c, err := rsd.NewClient(ctx, nc, nil)
		if err != nil {
			b.Fatalf("%s: trusted RSD: %v", udid, err)
		}
		sink, ok1 := c.Handshake.Service(sim.SinkService)
		source, ok2 := c.Handshake.Service(sim.SourceService)
		c.Close()
		if !ok1 || !ok2 {
			b.Fatalf("%s lists no byte sink or source", udid)
		}
		env.devs = append(env.devs, manyDevice{udid: udid,
			sink:   net.JoinHostPort(host, strconv.Itoa(int(sink.Port))),
			source: net.JoinHostPort(host, strconv.Itoa(int(source.Port)))})
	}
	slices.SortFunc(env.devs, func(a, b manyDevice) int { return strings.Compare(a.udid, b.udid) })
	return env
}

// startChild starts cmd with its output in logPath and stops it (SIGTERM,
// then SIGKILL) at cleanup.
func startChild(b *testing.B, cmd *exec.Cmd, logPath string) {
	b.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		log.Close()
		if b.Failed() {
			out, _ := os.ReadFile(logPath)
			b.Logf("%s:\n%s", filepath.Base(logPath), out)
		}
	})
}

func waitUntil(b *testing.B, limit time.Duration, what string, ok func() bool) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			b.Fatalf("no %s after %v", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dial connects from inside tunneld's namespace.
func (e *manyEnv) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := e.ns.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// manyChunk is what one paced write or read moves.
const manyChunk = 256 << 10

// window moves data for -many-window at rate bytes/s per device in
// direction dir, reports, and says whether the fleet held ≥ 95 % of its
// aggregate rate.
func (e *manyEnv) window(b *testing.B, dir string, rate int64) bool {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conns := make([]net.Conn, len(e.devs))
	for i, d := range e.devs {
		addr := d.sink
		if dir == "down" {
			addr = d.source
		} else if dir != "up" {
			b.Fatalf("direction %q: want up or down", dir)
		}
		c, err := e.dial(ctx, "tcp", addr)
		if err != nil {
			b.Fatalf("%s: %v", d.udid, err)
		}
		if dir == "down" {
			var hdr [8]byte
			binary.BigEndian.PutUint64(hdr[:], ^uint64(0)) // until we close
			if _, err := c.Write(hdr[:]); err != nil {
				b.Fatal(err)
			}
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Let every connection reach its rate before measuring.
	stop := make(chan struct{})
	moved := make([]int64, len(conns))
	var counting sync.WaitGroup
	var mu sync.Mutex
	measuring := false
	for i, c := range conns {
		counting.Go(func() {
			bucket := pace.New(rate, float64(rate)/20)
			buf := make([]byte, manyChunk)
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int
				var err error
				if dir == "up" {
					n, err = c.Write(buf)
				} else {
					n, err = io.ReadFull(c, buf)
				}
				mu.Lock()
				if measuring {
					moved[i] += int64(n)
				}
				mu.Unlock()
				if err != nil {
					return
				}
				if !bucket.Take(n, stop) {
					return
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	perf := e.startPerf(b, dir, rate)
	cpu0 := e.cpu(b)
	mu.Lock()
	measuring = true
	t0 := time.Now()
	mu.Unlock()
	time.Sleep(*manyWindow)
	mu.Lock()
	measuring = false
	wall := time.Since(t0)
	got := slices.Clone(moved)
	mu.Unlock()
	cpu1 := e.cpu(b)
	close(stop)
	for _, c := range conns {
		c.SetDeadline(time.Now())
	}
	counting.Wait()
	perf()

	var total int64
	held, slowest := 0, 1.0
	for _, m := range got {
		total += m
		share := float64(m) / (float64(rate) * wall.Seconds())
		slowest = min(slowest, share)
		if share >= 0.95 {
			held++
		}
	}
	gib := float64(total) / (1 << 30)
	b.ReportMetric(float64(total)/1e6/wall.Seconds(), "MB/s-total")
	b.ReportMetric(float64(rate)*float64(len(got))/1e6, "MB/s-target")
	b.ReportMetric(float64(held), "devices-at-95%")
	b.ReportMetric(100*slowest, "slowest-%")
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{"tunneld", cpu1.tunneld - cpu0.tunneld}, {"sim", cpu1.sim - cpu0.sim}, {"clients", cpu1.clients - cpu0.clients}} {
		b.ReportMetric(p.d.Seconds()/gib, p.name+"-cpu-s/GiB")
		b.ReportMetric(100*p.d.Seconds()/wall.Seconds(), p.name+"-cpu-%")
	}
	ours := (cpu1.tunneld - cpu0.tunneld) + (cpu1.sim - cpu0.sim) + (cpu1.clients - cpu0.clients)
	b.ReportMetric(ours.Seconds()/gib, "total-cpu-s/GiB")
	b.ReportMetric(100*ours.Seconds()/wall.Seconds()/float64(runtime.NumCPU()), "total-cpu-share-%")
	busy := cpu1.busy - cpu0.busy
	b.ReportMetric(busy.Seconds()/gib, "host-cpu-s/GiB")
	b.ReportMetric(100*busy.Seconds()/wall.Seconds()/float64(runtime.NumCPU()), "host-busy-%")
	return float64(total) >= 0.95*float64(rate)*float64(len(got))*wall.Seconds()
}

// manyCPU is the CPU time of each part and the host's busy time.
type manyCPU struct{ tunneld, sim, clients, busy time.Duration }

func (e *manyEnv) cpu(b *testing.B) manyCPU {
	return manyCPU{
		tunneld: testkit.PIDCPU(b, e.tunneld.Process.Pid),
		sim:     testkit.PIDCPU(b, e.sim.Process.Pid),
		clients: testkit.ProcessCPU(),
		busy:    hostBusy(b),
	}
}

// hostBusy is the time every CPU of the host spent on anything but idle
// and iowait (/proc/stat), softirq included.
func hostBusy(b *testing.B) time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)[1:]
	var busy int64
	for i, v := range f {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// startPerf records perf(1) profiles of tunneld and the simulator for the
// coming window when -many-perf is set; the returned func waits for them.
func (e *manyEnv) startPerf(b *testing.B, dir string, rate int64) func() {
	if *manyPerf == "" {
		return func() {}
	}
	if err := os.MkdirAll(*manyPerf, 0o755); err != nil {
		b.Fatal(err)
	}
	var cmds []*exec.Cmd
	for name, pid := range map[string]int{"tunneld": e.tunneld.Process.Pid, "sim": e.sim.Process.Pid} {
		out := filepath.Join(*manyPerf, fmt.Sprintf("%s-n%d-%s-%dMBps.data", name, len(e.devs), dir, rate/1e6))
		cmd := exec.Command("perf", "record", "-F", "299", "-g", "-o", out, "-p", strconv.Itoa(pid),
			"--", "sleep", strconv.Itoa(int(manyWindow.Seconds())))
		if err := cmd.Start(); err != nil {
			b.Fatalf("perf: %v", err)
		}
		cmds = append(cmds, cmd)
	}
	return func() {
		for _, c := range cmds {
			c.Wait()
		}
	}
}
