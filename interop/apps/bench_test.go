package apps_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ios "github.com/danielpaulus/go-ios/ios"
	goafc "github.com/danielpaulus/go-ios/ios/afc"
	"github.com/danielpaulus/go-ios/ios/installationproxy"
	"github.com/danielpaulus/go-ios/ios/zipconduit"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/ipa/ipatest"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/instproxy"
	"github.com/iosmux/iosmux/services/reach"
	iosmuxzc "github.com/iosmux/iosmux/services/zipconduit"
	"github.com/iosmux/iosmux/sim/simtest"
	"github.com/iosmux/iosmux/usbmux"
)

// The performance comparison of docs/perf.md: one simulated iPhone in a
// process of its own (`iosmux sim`), and each client in turn against it in
// the same run: AFC push and pull of one large file and of 2000 small ones
// (iosmux and go-ios through usbmuxd with service TLS; iosmux and appium
// through an RSD: iosmux's backend on [::1], a userspace tunnel behind it,
// both in the benchmark's own process), and installs of a 200 MiB package
// (iosmux by the zip conduit and by installation_proxy, go-ios by the zip
// conduit, ideviceinstaller by installation_proxy). Each figure reports
// the wall time and the CPU time of every process involved: the simulated
// device, the client, and this process (the backend and tunnel for RSD
// clients; go-ios itself, which runs here as library calls).
//
//	cd interop && go test -run '^$' -bench BenchmarkApps -benchtime 1x ./apps/
//	IOSMUX_BENCH_MIB=64 … for a quick look (default 512; installs 200)
func BenchmarkApps(b *testing.B) {
	mib := 512
	if v, err := strconv.Atoi(os.Getenv("IOSMUX_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	ipaMiB := min(200, mib)
	br := startBenchRig(b)
	dir := benchDir(b)
	large := filepath.Join(dir, "large.bin")
	writeRandom(b, large, int64(mib)<<20, 1)
	small := filepath.Join(dir, "small")
	const nSmall = 2000
	os.MkdirAll(small, 0o755)
	each := (int64(mib) << 20) / nSmall
	for i := range nSmall {
		writeRandom(b, filepath.Join(small, fmt.Sprintf("f%04d.bin", i)), each, uint64(i+2))
	}
	pkg := filepath.Join(dir, "big.ipa")
	if err := ipatest.WriteFile(pkg, ipatest.Spec{BundleID: "com.example.bench", Name: "Bench", Version: "1", ShortVersion: "1.0", Bulk: int64(ipaMiB) << 20}); err != nil {
		b.Fatal(err)
	}
	largeBytes, smallBytes := int64(mib)<<20, each*nSmall
	udid := br.udid

	var rows []benchRow
	add := func(figure, client, path string, bytes int64, m measure) {
		rows = append(rows, benchRow{figure, client, path, bytes, m})
		b.Logf("%-22s %-28s %-8s %8.1f MB/s  %6.2fs  cpu: device %.2fs client %.2fs here %.2fs", figure, client, path,
			float64(bytes)/m.wall.Seconds()/1e6, m.wall.Seconds(), m.sim.Seconds(), m.client.Seconds(), m.self.Seconds())
	}
	clearDevice := func() { br.rmDevice(b, "Downloads/bench") }
	only := os.Getenv("IOSMUX_BENCH_ONLY") // large, small or install: one part
	part := func(name string) bool { return only == "" || only == name }
	for range b.N {
		for _, set := range []struct {
			part, figure, src string
			bytes             int64
		}{{"large", "1 large", large, largeBytes}, {"small", "2000 small", small, smallBytes}} {
			if !part(set.part) {
				continue
			}
			for _, c := range afcClients {
				clearDevice()
				br.mkdirDevice(b, "Downloads/bench")
				out := filepath.Join(benchDir(b), filepath.Base(set.src))
				push, pull := br.afcRound(b, c, set.src, "/Downloads/bench/"+filepath.Base(set.src), out)
				if contentTree(b, set.src) != contentTree(b, out) {
					b.Fatalf("%s %s: what was pulled differs from what was pushed", c.label(), c.path)
				}
				os.RemoveAll(out) // tmpfs is memory
				add("AFC push "+set.figure, c.label(), c.path, set.bytes, push)
				add("AFC pull "+set.figure, c.label(), c.path, set.bytes, pull)
			}
		}
		clearDevice()
		// Installs of the 200 MiB package.
		pkgBytes := fileSize(b, pkg)
		for _, c := range []struct{ name, path string }{
			{"iosmux (zip conduit)", "usbmuxd"}, {"iosmux (instproxy)", "usbmuxd"}, {"iosmux (zip conduit)", "RSD"}, {"iosmux (instproxy)", "RSD"},
			{"go-ios (zip conduit)", "usbmuxd"}, {"ideviceinstaller", "usbmuxd"}, {"iosmux command (zip conduit)", "usbmuxd"},
		} {
			if !part("install") {
				break
			}
			var m measure
			switch {
			case c.name == "iosmux command (zip conduit)":
				m = br.run(b, func() time.Duration { return br.cli(b, "apps", "install", pkg, "--udid", udid) })
			case strings.HasPrefix(c.name, "iosmux"):
				ctx := context.Background()
				o := br.opener(b, c.path)
				m = br.run(b, func() time.Duration {
					if strings.Contains(c.name, "instproxy") {
						conn, err := o.Open(ctx, reach.AFC)
						must(b, err)
						stager := afc.NewClient(conn, nil)
						_, err = instproxy.InstallLocal(ctx, o, stager, pkg, instproxy.InstallOptions{}, nil)
						stager.Close()
						must(b, err)
						return 0
					}
					_, err := iosmuxzc.Install(ctx, o, pkg, iosmuxzc.SendConfig{})
					must(b, err)
					return 0
				})
			case c.name == "go-ios (zip conduit)":
				m = br.run(b, func() time.Duration {
					zc, err := zipconduit.New(br.goios)
					must(b, err)
					must(b, zc.SendFile(pkg))
					zc.Close()
					return 0
				})
			case c.name == "ideviceinstaller":
				m = br.run(b, func() time.Duration {
					out, cpu, err := br.idevice(b, "ideviceinstaller", "-u", udid, "-i", pkg)
					if err != nil || !strings.Contains(out, "Install: Complete") {
						b.Fatalf("ideviceinstaller: %v\n%s", err, out)
					}
					return cpu
				})
			}
			br.uninstall(b, "com.example.bench")
			add("install 200 MiB .ipa", c.name, c.path, pkgBytes, m)
		}
	}
	report(b, rows)
}

type measure struct{ wall, sim, client, self time.Duration }

// benchDir is a fresh folder for the benchmark's files, on tmpfs when the
// machine has /dev/shm (IOSMUX_BENCH_DIR chooses another base): both the
// host's files and the simulated device's tree live there, so the figures
// measure the protocols and their implementations rather than the test
// machine's disk, whose page-cache writes cost more CPU than the rest of a
// transfer here.
func benchDir(b *testing.B) string {
	base := os.Getenv("IOSMUX_BENCH_DIR")
	if base == "" {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			base = "/dev/shm"
		}
	}
	d, err := os.MkdirTemp(base, "iosmux-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// afcClient is one AFC client measured: iosmux with a number of
// connections, or a peer.
type afcClient struct {
	name, path string
	conns      int
}

// afcRound pushes src (a file or a folder) to remote and pulls it back
// to out with client c.
func (br *benchRig) afcRound(b *testing.B, c afcClient, src, remote, out string) (push, pull measure) {
	b.Helper()
	switch c.name {
	case "iosmux":
		// Library calls in this process, as go-ios's are: the command's
		// own start-up (a lockdown session, TLS) is measured apart.
		ctx := context.Background()
		o := br.opener(b, c.path)
		var clients []*afc.Client
		for range c.conns {
			conn, err := o.Open(ctx, reach.AFC)
			must(b, err)
			clients = append(clients, afc.NewClient(conn, nil))
		}
		defer func() {
			for _, cl := range clients {
				cl.Close()
			}
		}()
		cfg := afc.TransferConfig{Extra: clients[1:]}
		push = br.run(b, func() time.Duration { _, err := clients[0].Push(ctx, src, remote, cfg); must(b, err); return 0 })
		pull = br.run(b, func() time.Duration { _, err := clients[0].Pull(ctx, remote, out, cfg); must(b, err); return 0 })
	case "go-ios":
		g, err := goafc.New(br.goios)
		must(b, err)
		defer g.Close()
		push = br.run(b, func() time.Duration {
			fi, err := os.Stat(src)
			must(b, err)
			if !fi.IsDir() {
				must(b, g.Push(src, remote))
				return 0
			}
			// go-ios's fsync push takes one file: a folder is a push per
			// file.
			ents, _ := os.ReadDir(src)
			must(b, g.MkDir(remote))
			for _, e := range ents {
				must(b, g.Push(filepath.Join(src, e.Name()), remote+"/"+e.Name()))
			}
			return 0
		})
		pull = br.run(b, func() time.Duration { must(b, g.Pull(remote, out)); return 0 })
	case "appium":
		op := "push"
		if fi, err := os.Stat(src); err == nil && fi.IsDir() {
			op = "pushTree"
		}
		push = br.run(b, func() time.Duration { return br.appiumOK(b, map[string]any{"op": op, "local": src, "remote": remote}) })
		pull = br.run(b, func() time.Duration {
			return br.appiumOK(b, map[string]any{"op": "pull", "remote": remote, "local": out})
		})
	}
	return push, pull
}

func (c afcClient) label() string {
	if c.name == "iosmux" {
		return fmt.Sprintf("iosmux, %d conn.", c.conns)
	}
	return c.name
}

var afcClients = []afcClient{
	{"iosmux", "usbmuxd", 1}, {"iosmux", "usbmuxd", 2}, {"iosmux", "usbmuxd", 4},
	{"iosmux", "RSD", 1}, {"iosmux", "RSD", 2},
	{"go-ios", "usbmuxd", 1}, {"appium", "RSD", 1},
}

type benchRow struct {
	figure, client, path string
	bytes                int64
	m                    measure
}

// report prints the medians per figure and client, and the ratios of
// iosmux's best to the best peer's.
func report(b *testing.B, rows []benchRow) {
	type key struct{ figure, client, path string }
	by := map[key][]measure{}
	var order []key
	var bytes = map[string]int64{}
	for _, r := range rows {
		k := key{r.figure, r.client, r.path}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], r.m)
		bytes[r.figure] = r.bytes
	}
	med := func(ms []measure) measure {
		sort.Slice(ms, func(i, j int) bool { return ms[i].wall < ms[j].wall })
		return ms[len(ms)/2]
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| figure | client | path | MB/s | s | CPU s: device | client | backend/here |\n|---|---|---|---|---|---|---|---|\n")
	best := map[string][2]float64{} // figure → best iosmux, best peer MB/s
	for _, k := range order {
		m := med(by[k])
		rate := float64(bytes[k.figure]) / m.wall.Seconds() / 1e6
		fmt.Fprintf(&sb, "| %s | %s | %s | %.1f | %.2f | %.2f | %.2f | %.2f |\n", k.figure, k.client, k.path, rate, m.wall.Seconds(), m.sim.Seconds(), m.client.Seconds(), m.self.Seconds())
		bb := best[k.figure]
		if strings.HasPrefix(k.client, "iosmux") {
			bb[0] = max(bb[0], rate)
		} else {
			bb[1] = max(bb[1], rate)
		}
		best[k.figure] = bb
	}
	var figs []string
	for f := range best {
		figs = append(figs, f)
	}
	sort.Strings(figs)
	for _, f := range figs {
		ratio := best[f][0] / best[f][1]
		fmt.Fprintf(&sb, "\n%s: iosmux best %.1f MB/s, best peer %.1f MB/s, ratio %.2f×", f, best[f][0], best[f][1], ratio)
		b.ReportMetric(ratio, strings.ReplaceAll(strings.ReplaceAll(f, " ", "-"), ".", "")+"-ratio")
	}
	b.Log(sb.String())
	if p := os.Getenv("IOSMUX_BENCH_OUT"); p != "" {
		os.WriteFile(p, []byte(sb.String()+"\n"), 0o644)
	}
}

// benchRig is `iosmux sim` in a process of its own, paired, with a
// backend on [::1] serving its RSD from this process.
type benchRig struct {
	bin   string
	sock  string
	state string
	udid  string
	pid   int
	mux   *usbmux.Client
	rsd   netip.AddrPort
	goios ios.DeviceEntry
	env   []string
}

func startBenchRig(b *testing.B) *benchRig {
	b.Helper()
	br := &benchRig{state: benchDir(b)}
	br.bin = filepath.Join(br.state, "iosmux")
	build := exec.Command("go", "build", "-o", br.bin, "./cmd/iosmux")
	build.Dir = testenv.RepoDir()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building iosmux: %v\n%s", err, out)
	}
	br.sock = filepath.Join(br.state, "usbmuxd")
	cmd := exec.Command(br.bin, "sim", "--count", "1", "--profile", "18.2", "--simulate-state", filepath.Join(br.state, "sim"),
		"--socket", br.sock, "--control", "none", "--json", "--log-level", "warn")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	br.pid = cmd.Process.Pid
	var ep struct{ Devices []struct{ UDID string } }
	if err := json.NewDecoder(bufio.NewReader(stdout)).Decode(&ep); err != nil || len(ep.Devices) != 1 {
		b.Fatalf("iosmux sim: %v %+v", err, ep)
	}
	go io.Copy(io.Discard, stdout)
	br.udid = ep.Devices[0].UDID
	br.env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS=UNIX:"+br.sock, "IOSMUX_STATE_DIR="+filepath.Join(br.state, "cli"))
	br.mux = usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: br.sock}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := br.mux.ListDevices(ctx)
	if err != nil || len(list) != 1 {
		b.Fatalf("usbmuxd lists %v, %v", list, err)
	}
	if _, err := lockdown.PairUsbmux(ctx, br.mux, list[0], lockdown.PairOptions{HostName: "apps-bench"}); err != nil {
		b.Fatal(err)
	}
	// The backend and its tunnel.
	tn := simtest.OpenTunnelWith(b, br.mux, list[0].UDID(), establish.Options{}, nil)
	bdir := filepath.Join(br.state, "backend")
	host, err := rsd.LoadOrCreateHostUUID(bdir)
	if err != nil {
		b.Fatal(err)
	}
	bk, err := backend.New(backend.Config{Listen: "[::1]:0", StateDir: bdir, HostUUID: host, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bk.Close() })
	if err := bk.Attach(ctx, backend.DeviceTunnel{RSD: tn.RSD(), Dial: tn.DialContext, Done: tn.Done()}); err != nil {
		b.Fatal(err)
	}
	br.rsd = bk.Addr()
	// go-ios, in this process, through the sim's usbmuxd.
	b.Setenv("USBMUXD_SOCKET_ADDRESS", "unix://"+br.sock)
	if br.goios, err = ios.GetDevice(br.udid); err != nil {
		b.Fatal(err)
	}
	return br
}

// run measures f: wall time, and the CPU time of the device's process,
// of this process, and the client's (what f returns, for a child).
func (br *benchRig) run(b *testing.B, f func() time.Duration) measure {
	b.Helper()
	s0, self0 := procCPU(b, br.pid), selfCPU()
	t0 := time.Now()
	client := f()
	wall := time.Since(t0)
	return measure{wall: wall, sim: procCPU(b, br.pid) - s0, client: client, self: selfCPU() - self0}
}

// opener is iosmux's way to the device: usbmuxd (lockdown, service TLS)
// or the backend's RSD.
func (br *benchRig) opener(b *testing.B, path string) reach.Opener {
	b.Helper()
	ctx := context.Background()
	if path == "RSD" {
		o, err := reach.NewRSD(ctx, nil, br.rsd, reach.RSDConfig{})
		must(b, err)
		return o
	}
	o, err := reach.NewLockdown(ctx, br.mux, br.udid)
	must(b, err)
	return o
}

// cli runs the iosmux command; it returns its CPU time.
func (br *benchRig) cli(b *testing.B, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(br.bin, append(args, "--json")...)
	cmd.Env = br.env
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("iosmux %v: %v\n%s", args, err, out)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

func (br *benchRig) appiumOK(b *testing.B, steps ...map[string]any) time.Duration {
	b.Helper()
	res, cpu := appiumAt(b, br.udid, br.rsd, steps...)
	for _, s := range res {
		if !s.OK {
			b.Fatalf("appium %s: %s", s.Op, s.Error)
		}
	}
	return cpu
}

func (br *benchRig) idevice(b *testing.B, tool string, args ...string) (string, time.Duration, error) {
	return runIdevice(b, br.sock, tool, args...)
}

func (br *benchRig) rmDevice(b *testing.B, p string) {
	os.RemoveAll(filepath.Join(br.state, "sim", "device-00", "Media", p))
}

func (br *benchRig) mkdirDevice(b *testing.B, p string) {
	os.MkdirAll(filepath.Join(br.state, "sim", "device-00", "Media", p), 0o755)
}

func (br *benchRig) uninstall(b *testing.B, id string) {
	b.Helper()
	ip, err := installationproxy.New(br.goios)
	if err != nil {
		b.Fatal(err)
	}
	defer ip.Close()
	must(b, ip.Uninstall(id))
}

// procCPU is a process's user+system time from /proc.
func procCPU(b *testing.B, pid int) time.Duration { return testkit.PIDCPU(b, pid) }

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func writeRandom(b *testing.B, p string, n int64, seed uint64) {
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, testkit.Rand(seed), n); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

func fileSize(b *testing.B, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// contentTree hashes the relative names and contents of the regular files
// under dir (modes differ between clients that are all correct).
func contentTree(b *testing.B, dir string) [32]byte {
	h := sha256.New()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, fi.Size())
		f, _ := os.Open(p)
		io.Copy(h, f)
		f.Close()
		return nil
	})
	var out [32]byte
	h.Sum(out[:0])
	return out
}
