package tunnel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/testkit"
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
// its namespace, moves data through it and prints its MB/s.

const (
	udid       = "00008110-001A2B3C0E01401E"
	rsdPort    = 58783
	sinkPort   = 9
	sourcePort = 19
	clientEnv  = "IOSMUX_INTEROP_TUNNEL_CLIENT"
)

// -device-end kernel puts the device's end of the tunnel on the kernel
// (tunnel.ServerConfig.Kernel: a network namespace and a TUN per tunnel)
// instead of gVisor, so the benchmark measures the clients, not the device.
var deviceEnd = flag.String("device-end", "netstack", "the simulated device's tunnel end: netstack or kernel")

// -client-cpuprofile writes a CPU profile of iosmux's client process (the
// last run's) to the file: where the host side's CPU goes on P1.
var clientProfile = flag.String("client-cpuprofile", "", "write a CPU profile of iosmux's client process to this file")

const profileEnv = "IOSMUX_INTEROP_TUNNEL_CPUPROFILE"

// -client-cpu pins each client process to one CPU (taskset, which execs
// the client in the same process, so its rusage is the client's); run the
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

// sink reads to EOF and answers the byte count (8 bytes, big-endian).
func sink(c net.Conn) {
	defer c.Close()
	n, _ := io.Copy(io.Discard, c)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	c.Write(b[:])
}

// source reads an 8-byte length and sends that many bytes.
func source(c net.Conn) {
	defer c.Close()
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
	// CPU is the client process's user+system time, DevCPU this process's
	// (the device) while the client ran, Wall the client's run time.
	CPU, DevCPU, Wall time.Duration `json:"-"`
	// SetUp is the tunnel call's time (ConnectTunnelLockdown, Establish).
	SetUp float64 `json:"setup_ms"`
	// Steps are iosmux's Tunnel.Steps in ms.
	Steps map[string]float64 `json:"steps_ms,omitempty"`
}

// runClient runs cmd in a new network namespace with usbmuxd at sock and
// parses its result.
func runClient(t testing.TB, cmd *exec.Cmd, sock string) result {
	t.Helper()
	cmd.Env = append(append(os.Environ(), cmd.Env...), "USBMUXD_SOCKET_ADDRESS=unix://"+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dev0, t0 := testkit.ProcessCPU(), time.Now()
	out, err := cmd.Output()
	dev, wall := testkit.ProcessCPU()-dev0, time.Since(t0)
	if err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(cmd.Path), err, stderr.String())
	}
	var r result
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("%s printed %q: %v\n%s", filepath.Base(cmd.Path), out, err, stderr.String())
	}
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	r.DevCPU, r.Wall = dev, wall
	return r
}

// buildGoIOS builds goiostunnel/.
func buildGoIOS(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "goiostunnel")
	build := exec.Command("go", "build", "-o", bin, ".")
	_, file, _, _ := runtime.Caller(0)
	build.Dir = filepath.Join(filepath.Dir(file), "goiostunnel")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building goiostunnel: %v\n%s", err, out)
	}
	return bin
}

func goiosCmd(bin string, mib int) *exec.Cmd {
	return pinned(bin, udid, strconv.Itoa(mib), strconv.Itoa(sinkPort), strconv.Itoa(sourcePort))
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
	size := int64(mib) << 20
	a := tn.Params.ServerAddress.String()
	up, err := transfer(a, sinkPort, size, true)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	down, err := transfer(a, sourcePort, size, false)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	steps := map[string]float64{}
	for _, s := range tn.Steps {
		steps[s.Step] += float64(s.Took.Microseconds()) / 1000
	}
	out, _ := json.Marshal(result{Up: up, Down: down, Address: a, SetUp: float64(setUp.Microseconds()) / 1000, Steps: steps})
	fmt.Println(string(out))
	return nil
}

// transfer is goiostunnel's transfer: upload to the sink or download from
// the source, checking the byte count; MB/s.
func transfer(addr string, port int, size int64, up bool) (float64, error) {
	c, err := net.DialTimeout("tcp6", net.JoinHostPort(addr, strconv.Itoa(port)), 15*time.Second)
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
// TUN; iosmux's client does the same against the same device.
func TestGoIOSTunnelClient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for network namespaces and TUN devices (CI runs as root)")
	}
	bin := buildGoIOS(t)
	sock := device(t)
	g := runClient(t, goiosCmd(bin, 4), sock)
	t.Logf("go-ios: %+v", g)
	o := runClient(t, oursCmd(4), sock)
	t.Logf("iosmux: %+v", o)
	if g.Address != o.Address {
		t.Errorf("the device gave go-ios %s and iosmux %s; want its one address", g.Address, o.Address)
	}
}

// BenchmarkTunnelClients moves 256 MiB each way through go-ios's tunnel
// client and iosmux's, one after the other in the same run against the same
// device role, b.N times, and reports each direction's MB/s (docs/perf.md).
func BenchmarkTunnelClients(b *testing.B) {
	bin := buildGoIOS(b)
	sock := device(b)
	mib := 256
	var g, o result
	for range b.N {
		rg := runClient(b, goiosCmd(bin, mib), sock)
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
	// each client process, and the CPU share of the client and of the
	// device (this process) over the client's run: which side was the
	// limit.
	gib := n * float64(2*mib) / 1024
	for _, c := range []struct {
		name string
		r    result
	}{{"goios", g}, {"iosmux", o}} {
		b.ReportMetric(c.r.CPU.Seconds()/gib, c.name+"-cpu-s/GiB")
		b.ReportMetric(100*c.r.CPU.Seconds()/c.r.Wall.Seconds(), c.name+"-cpu-%")
		b.ReportMetric(100*c.r.DevCPU.Seconds()/c.r.Wall.Seconds(), c.name+"-dev-cpu-%")
	}
}

func (r *result) add(o result) {
	r.Up += o.Up
	r.Down += o.Down
	r.CPU += o.CPU
	r.DevCPU += o.DevCPU
	r.Wall += o.Wall
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
		g = append(g, runClient(b, goiosCmd(bin, 0), sock).SetUp)
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
