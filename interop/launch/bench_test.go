package launch_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/interop/internal/netns"
	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/services/coredevice/appservice"
	"github.com/iosmux/iosmux/services/debugproxy"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
	"github.com/vishvananda/netlink"
)

// BenchmarkLaunchPerf measures, against one simulated iPhone in one run:
// the latency of a launch (call to reply, the process running on the
// device when the reply leaves it) through iosmux's appservice client and
// through appium's, and the debugserver forwarder's throughput against a
// direct connection through the same tunnel (kernel and userspace). It
// runs in a network namespace of its own; the figures are in docs/perf.md.
//
//	cd interop && go test -run '^$' -bench BenchmarkLaunchPerf -benchtime 1x ./launch/
func BenchmarkLaunchPerf(b *testing.B) {
	if os.Getenv(netnsEnv) == "" {
		if os.Geteuid() != 0 {
			b.Fatal("needs root for a network namespace and a kernel tunnel")
		}
		cmd := netns.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkLaunchPerf$", "-test.benchtime=1x", "-test.v")
		cmd.Env = append(os.Environ(), netnsEnv+"=bench")
		out, err := cmd.CombinedOutput()
		b.Logf("in the namespace:\n%s", out)
		if err != nil {
			b.Fatal(err)
		}
		return
	}
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	ctx := testCtx(b, 10*time.Minute)
	f, d := startDevice(b, sim.Realism{})
	records := b.TempDir()
	dm := startTunneld(b, f, false, records)
	rsdAddr := dm.rsd(b, ctx, d.UDID())
	ro, err := reach.NewRSD(ctx, nil, rsdAddr, reach.RSDConfig{})
	if err != nil {
		b.Fatal(err)
	}
	mount(b, ctx, ro)
	ro.Refresh(ctx)

	const launches = 200
	lat := map[string][]time.Duration{}
	for _, oneShot := range []bool{false, true} {
		name := "iosmux (one connection)"
		if oneShot {
			name = "iosmux (a connection per launch, as appium)"
		}
		c, err := coredevice.Dial(ro, reach.AppService, &coredevice.Options{OneShot: oneShot})
		if err != nil {
			b.Fatal(err)
		}
		svc := appservice.New(c)
		for range launches {
			t0 := time.Now()
			p, err := svc.Launch(ctx, demoApp, appservice.LaunchOptions{TerminateExisting: true})
			el := time.Since(t0)
			if err != nil {
				b.Fatal(err)
			}
			if sp, _ := d.Processes().Get(int(p.PID)); sp.State != sim.ProcessRunning {
				b.Fatalf("pid %d not running at the reply", p.PID)
			}
			lat[name] = append(lat[name], el)
		}
		svc.Close()
	}
	out := node(b, ctx, "appium_appservice.mjs", "bench", d.UDID(), rsdAddr.Addr().String(), strconv.Itoa(int(rsdAddr.Port())), demoApp, strconv.Itoa(launches))
	var ab struct {
		NS  []int64 `json:"ns"`
		PID int     `json:"pid"`
	}
	if err := json.Unmarshal(out, &ab); err != nil || len(ab.NS) != launches {
		b.Fatalf("appium bench %s: %v", out, err)
	}
	for _, ns := range ab.NS {
		lat["appium-ios-remotexpc"] = append(lat["appium-ios-remotexpc"], time.Duration(ns))
	}
	median := func(l []time.Duration) time.Duration {
		s := slices.Clone(l)
		slices.Sort(s)
		return s[len(s)/2]
	}
	p90 := func(l []time.Duration) time.Duration {
		s := slices.Clone(l)
		slices.Sort(s)
		return s[len(s)*9/10]
	}
	appium := median(lat["appium-ios-remotexpc"])
	var table bytes.Buffer
	fmt.Fprintf(&table, "launch latency, %d launches each, kernel tunnel:\n", launches)
	for _, name := range []string{"iosmux (one connection)", "iosmux (a connection per launch, as appium)", "appium-ios-remotexpc"} {
		m := median(lat[name])
		fmt.Fprintf(&table, "  %-45s median %8.3f ms  p90 %8.3f ms  appium/this %.2f×\n", name, ms(m), ms(p90(lat[name])), float64(appium)/float64(m))
	}

	// Forwarder throughput: the device's byte source, read directly
	// through the tunnel and through a debugproxy forwarder.
	const size = 256 << 20
	src := netip.AddrPortFrom(rsdAddr.Addr(), d.TrustedService(sim.SourceService))
	fmt.Fprintf(&table, "forwarder throughput, %d MiB from the device, best of 5:\n", size>>20)
	forward(b, &table, "kernel tunnel", src, size)

	dm.stop()
	dm = startTunneld(b, f, true, records)
	relayed := dm.rsd(b, ctx, d.UDID())
	forward(b, &table, "userspace tunnel (tunneld's loopback relay)", netip.AddrPortFrom(relayed.Addr(), d.TrustedService(sim.SourceService)), size)
	dm.stop()

	// A device on a USB 2 link (the simulator's 40 MB/s cap), as a real
	// one is: the link, not the CPU, is the limit.
	f2, d2 := startDevice(b, sim.Realism{LinkRate: 40_000_000})
	dm = startTunneld(b, f2, false, b.TempDir())
	usb := dm.rsd(b, ctx, d2.UDID())
	forward(b, &table, "kernel tunnel, USB 2 link (40 MB/s)", netip.AddrPortFrom(usb.Addr(), d2.TrustedService(sim.SourceService)), 64<<20)
	b.Logf("\n%s", table.String())
	fmt.Print(table.String())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fixedOpener opens one address whatever service is asked for: the
// forwarder's relay measured on a byte source instead of a debugserver.
type fixedOpener struct{ addr netip.AddrPort }

func (o fixedOpener) UDID() string { return "bench" }
func (o fixedOpener) Open(ctx context.Context, _ reach.Names) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", o.addr.String())
}

// pull asks the byte source at addr for n bytes and reads them; it returns
// MB/s and this process's CPU share meanwhile (1 = one core: device,
// tunnel, tunneld, forwarder and reader are all this process).
func pull(b *testing.B, addr string, n int64) (float64, float64) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	t0, cpu0 := time.Now(), testkit.ProcessCPU()
	if _, err := c.Write(hdr[:]); err != nil {
		b.Fatal(err)
	}
	got, err := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
	el := time.Since(t0)
	share := testkit.Share(testkit.ProcessCPU()-cpu0, el)
	if err != nil || got != n {
		b.Fatalf("read %d of %d bytes: %v", got, n, err)
	}
	return float64(n) / el.Seconds() / 1e6, share
}

func forward(b *testing.B, w io.Writer, name string, src netip.AddrPort, n int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fw := debugproxy.NewForwarder(ln, debugproxy.ForwarderConfig{Opener: fixedOpener{src}})
	defer fw.Close()
	// Both paths alternate, each first in turn, so they see the same
	// machine load; the best of five each.
	var direct, via, directCPU, viaCPU float64
	best := func(mbs, cpu *float64, addr string) {
		if m, c := pull(b, addr, n); m > *mbs {
			*mbs, *cpu = m, c
		}
	}
	for i := range 5 {
		if i%2 == 0 {
			best(&direct, &directCPU, src.String())
			best(&via, &viaCPU, fw.Addr().String())
		} else {
			best(&via, &viaCPU, fw.Addr().String())
			best(&direct, &directCPU, src.String())
		}
	}
	fmt.Fprintf(w, "  %-45s direct %7.0f MB/s  forwarder %7.0f MB/s  forwarder/direct %.2f×  process CPU share %.2f / %.2f\n", name, direct, via, via/direct, directCPU, viaCPU)
}
