package tunnel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/interop/internal/netns"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
)

// go-ios v1.3.2's CoreDeviceProxy tunnel client (goiostunnel/, a module of
// its own: go-ios needs an older gvisor than iosmux) and iosmux's, each in a
// process with a network namespace of its own (CLONE_NEWNET), reach the
// same simulated device: usbmuxd on a UNIX socket (paths are not
// namespaced), lockdown with CoreDeviceProxy, and a tunnel.Server behind
// it with a sink and a source port. Each client creates its kernel TUN in
// its namespace, then runs the application that moves the data through it
// (this test binary in app mode, the same for both clients) as a child
// process of its own, one per direction, and prints the MB/s and the CPU
// of each process per direction.

const (
	udid       = "00008110-001A2B3C0E01401E"
	rsdPort    = 58783
	sinkPort   = 9
	sourcePort = 19
	clientEnv  = "IOSMUX_INTEROP_TUNNEL_CLIENT"
	// appEnv runs this test binary as the application: "up|down
	// ADDR:PORT BYTES" (see app). goiostunnel runs it the same way.
	appEnv = "IOSMUX_INTEROP_TUNNEL_APP"
	// burnEnv makes the application spin until it has used this much CPU
	// (a time.Duration) before it transfers: the check that its CPU is
	// counted as the application's and not the client's.
	burnEnv = "IOSMUX_INTEROP_TUNNEL_APP_BURN"
	// appCCEnv is the application socket's TCP congestion control (-app-cc).
	appCCEnv = "IOSMUX_INTEROP_TUNNEL_APP_CC"
)

// -app-cc chooses the application socket's TCP congestion control (e.g.
// cubic, bbr; empty: the system's default), before it connects. With BBR the
// application's TCP paces its sends with timers of its own, whose softirq
// work lands on whichever process the CPU runs then, often the tunnel
// client (docs/perf.md "the application's congestion control").
var appCC = flag.String("app-cc", "", "TCP congestion control of the benchmark application's socket; empty: the system default")

// -device-end kernel puts the device's end of the tunnel on the kernel
// (tunnel.ServerConfig.Kernel: a network namespace and a TUN per tunnel)
// instead of gVisor, so the benchmark measures the clients, not the device.
var deviceEnd = flag.String("device-end", "netstack", "the simulated device's tunnel end: netstack or kernel")

// -client-cpuprofile writes a CPU profile of iosmux's client process (the
// last run's) to the file: where the host side's CPU goes on P1.
var clientProfile = flag.String("client-cpuprofile", "", "write a CPU profile of iosmux's client process to this file")

const profileEnv = "IOSMUX_INTEROP_TUNNEL_CPUPROFILE"

// -client-cpu pins each client process to one CPU (taskset, which execs
// the client in the same process, so its rusage is the client's; the
// application processes it starts inherit the CPU mask); run the
// benchmark itself (the device) under taskset on another CPU to give each
// side a CPU of its own, as BenchmarkTLSPSKSplit does.
var clientCPU = flag.Int("client-cpu", -1, "pin each client process to this CPU (taskset); -1: not pinned")

// pinned runs name args under taskset when -client-cpu asks for it.
func pinned(name string, args ...string) *exec.Cmd {
	if *clientCPU < 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", strconv.Itoa(*clientCPU), name}, args...)...)
}

// device is the simulated iPhone; its usbmuxd socket is returned.
func device(t testing.TB) string {
	t.Helper()
	if *deviceEnd != "netstack" && *deviceEnd != "kernel" {
		t.Fatalf("-device-end %q: want netstack or kernel", *deviceEnd)
	}
	dev, err := tunnel.NewServer(tunnel.ServerConfig{RSDPort: rsdPort, Kernel: *deviceEnd == "kernel"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	for port, serve := range map[uint16]func(net.Conn){sinkPort: sink, sourcePort: source} {
		ln, err := dev.ListenTCP(port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(testkit.Serve(ln, serve))
	}
	ep, err := establish.NewServer(establish.ServerConfig{Tunnels: dev, CipherSuites: []uint16{tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	ports := usbmux.NewPortMux(0)
	t.Cleanup(func() { ports.Close() })
	ld, err := lockdown.NewServer(lockdown.ServerConfig{
		Values:   map[string]any{"UniqueDeviceID": udid, "ProductVersion": "17.4", "ProductType": "iPhone14,2", "DeviceName": "Interop iPhone"},
		Services: map[string]lockdown.ServiceHandler{lockdown.CoreDeviceProxy: ep.CoreDeviceProxyService()},
		Ports:    ports,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ld.Close() })
	ports.Handle(lockdown.Port, ld.ServeConn)
	srv := usbmux.NewServer(usbmux.ServerConfig{})
	t.Cleanup(func() { srv.Close() })
	srv.AddDevice(usbmux.DeviceEntry{SerialNumber: udid, ConnectionType: usbmux.ConnectionUSB, ProductID: 0x12a8}, ports)
	rec, err := lockdown.NewPairRecord(nil, ld.PublicKeyPEM(), "5A2B6F1E-0000-4000-8000-000000000002", srv.BUID(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := ld.AddPairing(rec); err != nil {
		t.Fatal(err)
	}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	srv.SetPairRecord(udid, b)
	sock := filepath.Join(t.TempDir(), "usbmuxd")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l) // ends when srv.Close closes l
	return sock
}

// span is a process's CPU over a stretch of wall time.
type span struct{ CPU, Wall time.Duration }

func (s *span) add(o span) {
	s.CPU += o.CPU
	s.Wall += o.Wall
}

// devXfer is the device process's CPU and wall time over each transfer
// of the client running now (sink: up, source: down); runClient resets
// it. The clients run one at a time, one transfer at a time.
var devXfer struct {
	sync.Mutex
	up, down span
}

// measureDev adds the device's CPU and wall time since cpu0, t0 to one
// direction of devXfer.
func measureDev(up bool, cpu0 time.Duration, t0 time.Time) {
	s := span{CPU: testkit.ProcessCPU() - cpu0, Wall: time.Since(t0)}
	devXfer.Lock()
	defer devXfer.Unlock()
	if up {
		devXfer.up.add(s)
	} else {
		devXfer.down.add(s)
	}
}

// sink reads to EOF and answers the byte count (8 bytes, big-endian).
func sink(c net.Conn) {
	defer c.Close()
	defer measureDev(true, testkit.ProcessCPU(), time.Now())
	n, _ := io.Copy(io.Discard, c)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	c.Write(b[:])
}

// source reads an 8-byte length and sends that many bytes.
func source(c net.Conn) {
	defer c.Close()
	defer measureDev(false, testkit.ProcessCPU(), time.Now())
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	buf := make([]byte, 1<<20)
	for left := int64(binary.BigEndian.Uint64(hdr[:])); left > 0; left -= int64(len(buf)) {
		if _, err := c.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			return
		}
	}
}

// result is what a client prints.
type result struct {
	Up      float64 `json:"up_mbps"`
	Down    float64 `json:"down_mbps"`
	Address string  `json:"address"`
	// UpX and DownX are the client's account of each transfer: its own
	// CPU, the application's, the wall time.
	UpX   xfer `json:"up"`
	DownX xfer `json:"down"`
	// SelfCPU is the client's own CPU (RUSAGE_SELF) just before it
	// printed: a cross-check of CPU - AppCPU.
	SelfCPU time.Duration `json:"self_cpu_ns"`
	// AppCPUs is the application's allowed CPUs (its Cpus_allowed_list):
	// with -client-cpu, the client's CPU.
	AppCPUs string `json:"app_cpus"`
	// CPU is the client process's user+system time as wait4 gives it, so
	// with its waited-for children (the application) included; AppCPU is
	// the application's part of it (UpX.App + DownX.App), DevCPU this
	// process's (the device) while the client ran, Wall the client's run
	// time; DevUp and DevDown the device's over each transfer.
	CPU, AppCPU, DevCPU, Wall time.Duration `json:"-"`
	DevUp, DevDown            span          `json:"-"`
	// SetUp is the tunnel call's time (ConnectTunnelLockdown, Establish).
	SetUp float64 `json:"setup_ms"`
	// Steps are iosmux's Tunnel.Steps in ms.
	Steps map[string]float64 `json:"steps_ms,omitempty"`
}

// xfer is one transfer's account: Client is the client process's own CPU
// over it (RUSAGE_SELF, so the application's is not in it), App the
// application process's (its wait4 rusage), Wall the time from starting
// the application to reaping it.
type xfer struct {
	Client time.Duration `json:"client_cpu_ns"`
	App    time.Duration `json:"app_cpu_ns"`
	Wall   time.Duration `json:"wall_ns"`
}

// appResult is what the application prints.
type appResult struct {
	MBps float64 `json:"mbps"`
	CPUs string  `json:"cpus"`
}

// runClient runs cmd in a new network namespace with usbmuxd at sock and
// parses its result.
func runClient(t testing.TB, cmd *exec.Cmd, sock string) result {
	t.Helper()
	cmd.Env = append(append(os.Environ(), cmd.Env...), "USBMUXD_SOCKET_ADDRESS=unix://"+sock)
	netns.Isolate(cmd)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	devXfer.Lock()
	devXfer.up, devXfer.down = span{}, span{}
	devXfer.Unlock()
	dev0, t0 := testkit.ProcessCPU(), time.Now()
	out, err := cmd.Output()
	dev, wall := testkit.ProcessCPU()-dev0, time.Since(t0)
	devXfer.Lock()
	devUp, devDown := devXfer.up, devXfer.down
	devXfer.Unlock()
	if err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(cmd.Path), err, stderr.String())
	}
	var r result
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("%s printed %q: %v\n%s", filepath.Base(cmd.Path), out, err, stderr.String())
	}
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	r.AppCPU = r.UpX.App + r.DownX.App
	r.DevCPU, r.Wall = dev, wall
	r.DevUp, r.DevDown = devUp, devDown
	return r
}

// buildGoIOS builds goiostunnel/.
func buildGoIOS(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "goiostunnel")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testenv.ModuleDir(), "tunnel", "goiostunnel")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building goiostunnel: %v\n%s", err, out)
	}
	return bin
}

// goiosCmd runs goiostunnel with this test binary as its application.
func goiosCmd(t testing.TB, bin string, mib int) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return pinned(bin, udid, strconv.Itoa(mib), strconv.Itoa(sinkPort), strconv.Itoa(sourcePort), self)
}

// oursCmd re-runs this test binary as iosmux's client (TestMain).
func oursCmd(mib int) *exec.Cmd {
	cmd := pinned(os.Args[0], "-test.run=^$")
	cmd.Env = append(cmd.Env, clientEnv+"="+strconv.Itoa(mib))
	if *clientProfile != "" {
		cmd.Env = append(cmd.Env, profileEnv+"="+*clientProfile)
	}
	return cmd
}

func TestMain(m *testing.M) {
	if v := os.Getenv(appEnv); v != "" {
		if err := app(v); err != nil {
			fmt.Fprintln(os.Stderr, "tunnel app:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv(clientEnv); v != "" {
		mib, _ := strconv.Atoi(v)
		if p := os.Getenv(profileEnv); p != "" {
			f, err := os.Create(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, "iosmux client:", err)
				os.Exit(1)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, "iosmux client:", err)
				os.Exit(1)
			}
		}
		err := oursClient(mib)
		pprof.StopCPUProfile()
		if err != nil {
			fmt.Fprintln(os.Stderr, "iosmux client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// oursClient is iosmux's side: P1 through usbmuxd onto a kernel TUN, then
// the same transfers as goiostunnel.
func oursClient(mib int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := strings.TrimPrefix(os.Getenv("USBMUXD_SOCKET_ADDRESS"), "unix://")
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: addr}})
	devs, err := mux.ListDevices(ctx)
	if err != nil || len(devs) == 0 {
		return fmt.Errorf("usbmuxd lists %v: %v", devs, err)
	}
	start := time.Now()
	tn, err := establish.Establish(ctx, discovery.UsbmuxSighting(devs[0]), establish.Options{Usbmux: mux})
	if err != nil {
		return err
	}
	setUp := time.Since(start)
	defer tn.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	size := int64(mib) << 20
	a := tn.Params.ServerAddress.String()
	if size == 0 { // set-up only (BenchmarkTunnelSetUp)
		out, _ := json.Marshal(result{Address: a, SetUp: float64(setUp.Microseconds()) / 1000, Steps: tunnelSteps(tn)})
		fmt.Println(string(out))
		return nil
	}
	up, upX, cpus, err := runApp(self, "up", net.JoinHostPort(a, strconv.Itoa(sinkPort)), size)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	down, downX, _, err := runApp(self, "down", net.JoinHostPort(a, strconv.Itoa(sourcePort)), size)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	out, _ := json.Marshal(result{Up: up, Down: down, Address: a, UpX: upX, DownX: downX, SelfCPU: testkit.ProcessCPU(), AppCPUs: cpus,
		SetUp: float64(setUp.Microseconds()) / 1000, Steps: tunnelSteps(tn)})
	fmt.Println(string(out))
	return nil
}

// tunnelSteps is tn.Steps in ms by step.
func tunnelSteps(tn *establish.Tunnel) map[string]float64 {
	steps := map[string]float64{}
	for _, s := range tn.Steps {
		steps[s.Step] += float64(s.Took.Microseconds()) / 1000
	}
	return steps
}

// runApp runs the application (the executable app in app mode) for one
// transfer and returns its MB/s, the transfer's account and the
// application's CPUs. goiostunnel's runApp does the same.
func runApp(app, dir, addr string, size int64) (float64, xfer, string, error) {
	cmd := exec.Command(app)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", appEnv, dir, addr, size))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cpu0, t0 := testkit.ProcessCPU(), time.Now()
	out, err := cmd.Output()
	x := xfer{Client: testkit.ProcessCPU() - cpu0, Wall: time.Since(t0)}
	if err != nil {
		return 0, x, "", fmt.Errorf("%v: %s", err, stderr.Bytes())
	}
	x.App = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var r appResult
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, x, "", fmt.Errorf("the application printed %q: %v", out, err)
	}
	return r.MBps, x, r.CPUs, nil
}

// app is the application both clients run through their tunnel, in a
// process of its own: spec is "up|down ADDR:PORT BYTES" (ADDR:PORT as
// net.JoinHostPort gives it). It prints its MB/s and its allowed CPUs.
func app(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 3 || (f[0] != "up" && f[0] != "down") {
		return fmt.Errorf("%s=%q: want \"up|down ADDR:PORT BYTES\"", appEnv, spec)
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return err
	}
	if v := os.Getenv(burnEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s: %w", burnEnv, err)
		}
		for testkit.ProcessCPU() < d {
		}
	}
	mbps, err := transfer(f[1], size, f[0] == "up")
	if err != nil {
		return err
	}
	var cpus string
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				cpus = strings.TrimSpace(v)
			}
		}
	}
	out, _ := json.Marshal(appResult{MBps: mbps, CPUs: cpus})
	fmt.Println(string(out))
	return nil
}

// dial connects to the device through the TUN, retrying for a few seconds
// while the kernel still holds the TUN's address tentative (go-ios's
// tunnel adds its address without IFA_F_NODAD; goiostunnel explains).
func dial(addr string) (net.Conn, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := net.Dialer{Timeout: 15 * time.Second}
		if cc := os.Getenv(appCCEnv); cc != "" {
			d.Control = testkit.Congestion(cc)
		}
		c, err := d.Dial("tcp6", addr)
		if err == nil || !errors.Is(err, syscall.EADDRNOTAVAIL) || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// transfer uploads size bytes to the sink (which answers the count it
// received) or downloads size bytes from the source (asked with an 8-byte
// length); MB/s.
func transfer(addr string, size int64, up bool) (float64, error) {
	c, err := dial(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	buf := make([]byte, 1<<20)
	start := time.Now()
	var hdr [8]byte
	if up {
		for left := size; left > 0; left -= int64(len(buf)) {
			if _, err := c.Write(buf[:min(left, int64(len(buf)))]); err != nil {
				return 0, err
			}
		}
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return 0, err
		}
		if got := int64(binary.BigEndian.Uint64(hdr[:])); got != size {
			return 0, fmt.Errorf("sink received %d bytes, want %d", got, size)
		}
	} else {
		binary.BigEndian.PutUint64(hdr[:], uint64(size))
		if _, err := c.Write(hdr[:]); err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			return 0, err
		}
		if n != size {
			return 0, fmt.Errorf("source sent %d bytes, want %d", n, size)
		}
	}
	return float64(size) / time.Since(start).Seconds() / 1e6, nil
}

// TestGoIOSTunnelClient: go-ios's CoreDeviceProxy client establishes a
// tunnel to our device role and moves data both ways through its kernel
// TUN; iosmux's client does the same against the same device. The
// application spins for appBurn of CPU before each transfer, which must
// show up as the application's CPU and not as the client's: the
// benchmark's accounting of the two processes.
func TestGoIOSTunnelClient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for network namespaces and TUN devices (CI runs as root)")
	}
	const appBurn = 300 * time.Millisecond
	bin := buildGoIOS(t)
	sock := device(t)
	run := func(name string, cmd *exec.Cmd) result {
		cmd.Env = append(cmd.Env, burnEnv+"="+appBurn.String())
		r := runClient(t, cmd, sock)
		client := r.CPU - r.AppCPU
		t.Logf("%s: %+v; client alone %v (its own count %v), application %v", name, r, client, r.SelfCPU, r.AppCPU)
		for _, x := range []xfer{r.UpX, r.DownX} {
			if x.App < appBurn || x.Client >= appBurn {
				t.Errorf("%s: a transfer's account %+v: want the application's %v spin in App, not in Client", name, x, appBurn)
			}
		}
		// The two spins alone would take the client to 2*appBurn if they
		// were counted in it (the client's own work stays below that, under
		// -race too).
		if client < 0 || client >= 2*appBurn {
			t.Errorf("%s: client alone %v (wait4's %v less the application's %v): want the application's %v of spins outside it", name, client, r.CPU, r.AppCPU, 2*appBurn)
		}
		if d := client - r.SelfCPU; d < -50*time.Millisecond || d > 50*time.Millisecond {
			t.Errorf("%s: client alone %v by wait4 less the application, %v by its own count: want them within 50ms", name, client, r.SelfCPU)
		}
		if r.AppCPUs == "" {
			t.Errorf("%s: the application did not report its CPUs", name)
		}
		return r
	}
	g := run("go-ios", goiosCmd(t, bin, 4))
	o := run("iosmux", oursCmd(4))
	if g.Address != o.Address {
		t.Errorf("the device gave go-ios %s and iosmux %s; want its one address", g.Address, o.Address)
	}
}

// BenchmarkTunnelClients moves 256 MiB each way through go-ios's tunnel
// client and iosmux's, one after the other in the same run against the same
// device role, b.N times, and reports each direction's MB/s (docs/perf.md).
func BenchmarkTunnelClients(b *testing.B) {
	if *appCC != "" {
		b.Setenv(appCCEnv, *appCC)
	}
	bin := buildGoIOS(b)
	sock := device(b)
	mib := 256
	var g, o result
	for range b.N {
		rg := runClient(b, goiosCmd(b, bin, mib), sock)
		ro := runClient(b, oursCmd(mib), sock)
		g.add(rg)
		o.add(ro)
	}
	n := float64(b.N)
	b.ReportMetric(g.Up/n, "goios-up-MB/s")
	b.ReportMetric(g.Down/n, "goios-down-MB/s")
	b.ReportMetric(o.Up/n, "iosmux-up-MB/s")
	b.ReportMetric(o.Down/n, "iosmux-down-MB/s")
	b.ReportMetric(o.Up/g.Up, "up-ratio")
	b.ReportMetric(o.Down/g.Down, "down-ratio")
	// CPU per GiB moved (mib up and mib down per run, set-up included) of
	// each client process with its application (wait4's count, as before
	// the application had a process of its own), of the client alone and
	// of the application alone; and the CPU share of the client with its
	// application (one CPU with -client-cpu) and of the device (this
	// process) over the client's run: which side was the limit. Then per
	// direction, over each transfer alone: the client's and the
	// application's CPU-s/GiB and the shares of client, application and
	// device.
	gib := n * float64(2*mib) / 1024
	dirGiB := gib / 2
	for _, c := range []struct {
		name string
		r    result
	}{{"goios", g}, {"iosmux", o}} {
		r := c.r
		b.ReportMetric(r.CPU.Seconds()/gib, c.name+"-cpu-s/GiB")
		b.ReportMetric((r.CPU-r.AppCPU).Seconds()/gib, c.name+"-client-cpu-s/GiB")
		b.ReportMetric(r.AppCPU.Seconds()/gib, c.name+"-app-cpu-s/GiB")
		b.ReportMetric(100*r.CPU.Seconds()/r.Wall.Seconds(), c.name+"-cpu-%")
		b.ReportMetric(100*r.DevCPU.Seconds()/r.Wall.Seconds(), c.name+"-dev-cpu-%")
		for _, d := range []struct {
			dir string
			x   xfer
			dev span
		}{{"up", r.UpX, r.DevUp}, {"down", r.DownX, r.DevDown}} {
			p := c.name + "-" + d.dir + "-"
			b.ReportMetric(d.x.Client.Seconds()/dirGiB, p+"client-cpu-s/GiB")
			b.ReportMetric(d.x.App.Seconds()/dirGiB, p+"app-cpu-s/GiB")
			b.ReportMetric(100*d.x.Client.Seconds()/d.x.Wall.Seconds(), p+"client-%")
			b.ReportMetric(100*d.x.App.Seconds()/d.x.Wall.Seconds(), p+"app-%")
			b.ReportMetric(100*d.dev.CPU.Seconds()/d.dev.Wall.Seconds(), p+"dev-%")
		}
	}
}

func (r *result) add(o result) {
	r.Up += o.Up
	r.Down += o.Down
	r.CPU += o.CPU
	r.AppCPU += o.AppCPU
	r.DevCPU += o.DevCPU
	r.Wall += o.Wall
	r.UpX.add(o.UpX)
	r.DownX.add(o.DownX)
	r.DevUp.add(o.DevUp)
	r.DevDown.add(o.DevDown)
}

func (x *xfer) add(o xfer) {
	x.Client += o.Client
	x.App += o.App
	x.Wall += o.Wall
}

// BenchmarkTunnelSetUp times the tunnel call of go-ios's CoreDeviceProxy
// client (ConnectTunnelLockdown) and iosmux's (Establish of the usbmuxd
// sighting), each in a fresh process and network namespace with a kernel
// TUN, alternating, against the same device (docs/perf.md "set-up time by
// step"); nothing is transferred. Process start is not included. Reports
// the medians (ms), go-ios's over iosmux's, and iosmux's steps' medians.
func BenchmarkTunnelSetUp(b *testing.B) {
	bin := buildGoIOS(b)
	sock := device(b)
	var g, o []float64
	steps := map[string][]float64{}
	for range b.N {
		g = append(g, runClient(b, goiosCmd(b, bin, 0), sock).SetUp)
		r := runClient(b, oursCmd(0), sock)
		o = append(o, r.SetUp)
		for k, v := range r.Steps {
			steps[k] = append(steps[k], v)
		}
	}
	mg, mo := median(g), median(o)
	b.ReportMetric(mg, "goios-setup-ms")
	b.ReportMetric(mo, "iosmux-setup-ms")
	b.ReportMetric(mg/mo, "goios/iosmux")
	for k, v := range steps {
		b.ReportMetric(median(v), "iosmux-ms-"+strings.ReplaceAll(k, " ", "-"))
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
