//go:build linux

package establish

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/tunnel"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// BenchmarkTLSPSKSplit is BenchmarkTLSPSK with the two ends on their own
// CPUs, the way a real iPhone has a CPU of its own: the device side (the
// fixture device: L1 device roles, the establish and tunnel servers with the netstack, and
// the raw stream's tlspsk server) runs in a child process (this test binary
// re-executed as TestSplitDeviceProcess) pinned to CPU 1; this process, the
// host side (TUN, pump, TLS-PSK client, the bulk endpoint), pins itself to
// CPU 0. Both use GOMAXPROCS 1. Sub-benchmarks:
//
//	raw        tlspsk client here ↔ tlspsk server + sink/source in the child
//	kernel     kernel socket in a netns → kernel TUN → pump → TLS-PSK → child
//	userspace  127.0.0.1 → forwarder → host netstack → pump → TLS-PSK → child
//	*-fullmtu  the same with host→device packets up to the MTU (16000)
//	           rather than DefaultMaxSendPacket (8000)
//	*-kdev     against a cheap device: the child's end is our pump on a
//	           kernel TUN in its own netns, no gVisor, no pairing layer
//	           (bench_split_kdev_test.go)
//
// cpu-ns/B is this process's CPU per byte, dev-cpu-ns/B the child's, and
// on the tunnel rows app-cpu-ns/B the application's, which runs in a
// process of its own on the host CPU (bench_split_app_test.go);
// B/pkt-up and B/pkt-down the mean tunnel packet size each way,
// pkt-up/op and pkt-down/op the packets per MiB.
// Needs 2 CPUs and root (netns + TUN). -split-cpus=a,b picks other CPUs.
// Each runs once per suite of benchSuites (the first level of the name),
// with a device process of its own offering only that suite.
func BenchmarkTLSPSKSplit(b *testing.B) {
	for _, s := range benchSuites {
		b.Run(s.name, func(b *testing.B) { benchTLSPSKSplit(b, s.id) })
	}
}

func benchTLSPSKSplit(b *testing.B, suite uint16) {
	if *splitAppCC != "" {
		appDialControl = testkit.Congestion(*splitAppCC)
		b.Cleanup(func() { appDialControl = nil })
	}
	hostCPU, devCPU := splitCPUs(b)
	child := startSplitChild(b, devCPU, suite)
	prev := runtime.GOMAXPROCS(1)
	b.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	if err := pinProcess(hostCPU); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unpinProcess() })

	b.Run("raw", func(b *testing.B) {
		dial := func(addr string) net.Conn {
			nc, err := splitDial(context.Background(), "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c := tlspsk.Client(nc, &tlspsk.Config{PSK: make([]byte, 32)})
			if err := c.Handshake(); err != nil {
				b.Fatal(err)
			}
			return c
		}
		b.Run("up", func(b *testing.B) {
			c := dial(child.rawSink)
			defer c.Close()
			child.bench(b, func() { testkit.BenchUp(b, c) })
		})
		b.Run("down", func(b *testing.B) {
			c := dial(child.rawSource)
			defer c.Close()
			child.bench(b, func() { testkit.BenchDown(b, c) })
		})
	})
	for _, side := range []struct {
		name    string
		mk      func(testing.TB) hostSide
		maxSend int
		kdev    bool // the cheap device (bench_split_kdev_test.go)
	}{
		{"kernel", kernelSide, 0, false},
		{"userspace", userspaceSide, 0, false},
		// Host→device packets up to the MTU instead of DefaultMaxSendPacket
		// (8000, the USB CoreDeviceProxy limit pmd3 found): what a device
		// that takes full-size packets over the network path would see.
		{"kernel-fullmtu", kernelSide, tunnel.StreamMTU, false},
		{"userspace-fullmtu", userspaceSide, tunnel.StreamMTU, false},
		{"kernel-kdev", kernelSide, 0, true},
		{"userspace-kdev", userspaceSide, 0, true},
		{"kernel-kdev-fullmtu", kernelSide, tunnel.StreamMTU, true},
	} {
		b.Run(side.name, func(b *testing.B) {
			hs := side.mk(b)
			var tn *Tunnel
			if side.kdev {
				tn = startKernelDeviceHost(b, child.kdev, hs, side.maxSend)
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var err error
				tn, err = remotePairing(ctx, child.rpAddr, Options{
					NewTUN:        func(p tunnel.Params) (tun.Device, error) { return hs.newTUN(p), nil },
					Protocol:      TCP,
					MaxSendPacket: side.maxSend,
					Records:       pairing.RecordStore{Dir: child.records},
					HostName:      fixtureHostName,
					Dial:          splitDial,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { tn.Close() })
			}
			b.Run("up", func(b *testing.B) {
				c := hs.dial(b, tn, testkit.SinkPort)
				st := tn.Stats()
				child.bench(b, func() { benchApp(b, c, true, hostCPU) })
				reportPackets(b, st, tn.Stats())
			})
			b.Run("down", func(b *testing.B) {
				c := hs.dial(b, tn, testkit.SourcePort)
				st := tn.Stats()
				child.bench(b, func() { benchApp(b, c, false, hostCPU) })
				reportPackets(b, st, tn.Stats())
			})
		})
	}
}

// reportPackets adds the mean size of the packets the pump moved each way
// (B/pkt-up: TUN → device, B/pkt-down: device → TUN).
func reportPackets(b *testing.B, was, now tunnel.Stats) {
	if n := now.SentPackets - was.SentPackets; n > 0 {
		b.ReportMetric(float64(now.SentBytes-was.SentBytes)/float64(n), "B/pkt-up")
		b.ReportMetric(float64(n)/float64(b.N), "pkt-up/op")
	}
	if n := now.ReceivedPackets - was.ReceivedPackets; n > 0 {
		b.ReportMetric(float64(now.ReceivedBytes-was.ReceivedBytes)/float64(n), "B/pkt-down")
		b.ReportMetric(float64(n)/float64(b.N), "pkt-down/op")
	}
}

var splitCPUsFlag = flag.String("split-cpus", "0,1", "host CPU,device CPU for BenchmarkTLSPSKSplit")

func splitCPUs(b *testing.B) (host, dev int) {
	h, d, ok := strings.Cut(*splitCPUsFlag, ",")
	var err1, err2 error
	host, err1 = strconv.Atoi(h)
	dev, err2 = strconv.Atoi(d)
	if !ok || err1 != nil || err2 != nil || host == dev {
		b.Fatalf("-split-cpus=%q: want two different CPU numbers", *splitCPUsFlag)
	}
	return host, dev
}

// splitChild is the device process.
type splitChild struct {
	pid                int
	rpAddr, records    string
	rawSink, rawSource string
	kdev               string // the cheap device's TLS-PSK address
}

// bench runs f and adds host-cpu-ns/B and dev-cpu-ns/B.
func (c *splitChild) bench(b *testing.B, f func()) {
	dev0 := procCPU(b, c.pid)
	f()
	// testkit.BenchUp/testkit.BenchDown report cpu-ns/B (this process) themselves; the
	// child's CPU is read from /proc at clock-tick resolution.
	bytes := float64(int64(b.N) * testkit.BenchChunk)
	b.ReportMetric(float64(procCPU(b, c.pid)-dev0)/bytes, "dev-cpu-ns/B")
}

const splitEnv = "IOSMUX_SPLIT_DEVICE"

func startSplitChild(b *testing.B, cpu int, suite uint16) *splitChild {
	p := startSelf(b, "TestSplitDeviceProcess", fmt.Sprintf("%s=%d,%d", splitEnv, cpu, suite), "split ")
	b.Cleanup(p.stop)
	// The first line says where it serves: split rp=… records=… rawsink=…
	line, ok := p.next(2 * time.Minute)
	if !ok {
		b.Fatal("device process ended or was not ready after 2 min")
	}
	c := &splitChild{pid: p.cmd.Process.Pid}
	for _, kv := range strings.Fields(line)[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "rp":
			c.rpAddr = v
		case "records":
			c.records = v
		case "rawsink":
			c.rawSink = v
		case "rawsource":
			c.rawSource = v
		case "kdev":
			c.kdev = v
		}
	}
	return c
}

// TestSplitDeviceProcess is BenchmarkTLSPSKSplit's device process; without
// IOSMUX_SPLIT_DEVICE in the environment it has nothing to do.
func TestSplitDeviceProcess(t *testing.T) {
	spec := os.Getenv(splitEnv)
	if spec == "" {
		return
	}
	c, s, _ := strings.Cut(spec, ",")
	cpu, err1 := strconv.Atoi(c)
	suite, err2 := strconv.ParseUint(s, 10, 16)
	if err1 != nil || err2 != nil {
		t.Fatalf("%s=%q", splitEnv, spec)
	}
	runtime.GOMAXPROCS(1)
	if err := pinProcess(cpu); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureConfig{suites: []uint16{uint16(suite)}})
	for port, serve := range map[uint16]func(net.Conn){testkit.SinkPort: testkit.Sink, testkit.SourcePort: testkit.Source} {
		ln, err := f.dev.ListenTCP(port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(testkit.Serve(ln, serve))
	}
	raw := func(serve func(net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(testkit.Serve(ln, func(nc net.Conn) {
			dc := tlspsk.Server(nc, &tlspsk.Config{PSK: make([]byte, 32), CipherSuites: []uint16{uint16(suite)}, DisableExtendedMasterSecret: true})
			if dc.Handshake() == nil {
				serve(dc)
			}
			dc.Close()
		}))
		return ln.Addr().String()
	}
	rawSink, rawSource := raw(testkit.Sink), raw(testkit.Source)
	kdev := startKernelDevice(t, uint16(suite))
	fmt.Printf("split rp=%s records=%s rawsink=%s rawsource=%s kdev=%s\n", f.rpAddr, f.records.Dir, rawSink, rawSource, kdev)
	// Serve until the parent closes stdin.
	io.Copy(io.Discard, os.Stdin)
}

// pinProcess binds every thread of this process to cpu. New threads
// inherit the mask of the thread that creates them, so once every existing
// thread is pinned the whole process stays on cpu; the loop repeats until a
// pass finds no thread it has not pinned yet.
func pinProcess(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return setAllThreads(&set)
}

func unpinProcess() error {
	var set unix.CPUSet
	for i := range runtime.NumCPU() {
		set.Set(i)
	}
	return setAllThreads(&set)
}

func setAllThreads(set *unix.CPUSet) error {
	done := map[int]bool{}
	for {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		fresh := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh = true
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("sched_setaffinity(%d): %w", tid, err)
			}
			done[tid] = true
		}
		if !fresh {
			return nil
		}
	}
}

// procCPU is process pid's user+system CPU time.
func procCPU(b *testing.B, pid int) time.Duration { return testkit.PIDCPU(b, pid) }
