package sim

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
	"golang.zx2c4.com/wireguard/tun"
)

// BenchmarkFleet64 measures 64 simulated devices in one process on this
// machine: the cost of starting them, of keeping them idle, and of one
// CoreDeviceProxy tunnel per device with a trusted-RSD handshake through
// each (the host side of those tunnels runs in the same process, so the
// "tunnels" figures cover both ends). MiB figures are Go heap and stack in
// use (deltas); rss-MiB is the whole test process. Modes: loopback, ncm
// (USB-NCM and Wi-Fi links) and kernel (loopback with the kernel device
// end: a network namespace per device). docs/perf.md quotes it:
//
//	go test -run '^$' -bench 'BenchmarkFleet64' -benchtime 1x ./sim  (Linux)
func BenchmarkFleet64(b *testing.B) {
	for _, mode := range []string{"loopback", "ncm", "kernel"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				benchFleet(b, 64, mode == "ncm", mode == "kernel")
			}
		})
	}
}

func benchFleet(b *testing.B, n int, ncm, kernel bool) {
	key := testKey()
	runtime.GC()
	mem0 := memInUse()
	g0 := runtime.NumGoroutine()
	cpu0, t0 := cpuTime(), time.Now()
	cfg := FleetConfig{Count: n, Profile: MustProfile("18.2"), Loopback: true, LockdownKey: key}
	if kernel {
		cfg.DeviceEnd = DeviceEndKernel
	}
	if ncm {
		host, err := newNetNS()
		if err != nil {
			b.Fatal(err)
		}
		defer host.Close()
		cfg.NCM = &NCMConfig{HostNetNS: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), host.File().Fd()), WiFi: true}
	}
	f, err := StartFleet(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportMetric(time.Since(t0).Seconds(), "start-s")
	b.ReportMetric((cpuTime() - cpu0).Seconds(), "start-cpu-s")

	// Idle: what 64 booted devices cost while nobody talks to them.
	runtime.GC()
	b.ReportMetric(float64(memInUse()-mem0)/(1<<20), "idle-MiB")
	b.ReportMetric(float64(rssBytes())/(1<<20), "idle-rss-MiB")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0), "idle-goroutines")
	cpu1, t1 := cpuTime(), time.Now()
	time.Sleep(3 * time.Second)
	b.ReportMetric(100*(cpuTime()-cpu1).Seconds()/time.Since(t1).Seconds(), "idle-cpu-%")
	if ncm {
		return
	}

	// One P1 tunnel per device, all at once, each reading the trusted RSD.
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	list, err := mux.ListDevices(ctx)
	if err != nil || len(list) != n {
		b.Fatalf("usbmuxd lists %d devices: %v", len(list), err)
	}
	buid, err := mux.ReadBUID(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// Pairing (host RSA keys) is set-up, not measured.
	for _, u := range list {
		lc, err := lockdown.DialUsbmux(ctx, mux, u.DeviceID, lockdown.ClientConfig{})
		if err != nil {
			b.Fatal(err)
		}
		rec, err := lc.Pair(ctx, lockdown.PairConfig{SystemBUID: buid})
		lc.Close()
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := rec.Marshal()
		if err := mux.SavePairRecord(ctx, u.UDID(), u.DeviceID, raw); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	mem1 := memInUse()
	cpu2, t2 := cpuTime(), time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var pumps []*tunnel.Pump
	errs := make(chan error, n)
	for _, u := range list {
		wg.Go(func() {
			conn, _, err := lockdown.OpenService(ctx, mux, u, lockdown.CoreDeviceProxy, lockdown.ClientConfig{})
			if err != nil {
				errs <- err
				return
			}
			var ns *utun.Netstack
			pump, p, err := tunnel.StartClient(ctx, conn, tunnel.ClientConfig{NewTUN: func(p tunnel.Params) (tun.Device, error) {
				var err error
				ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
				return ns, err
			}})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			pumps = append(pumps, pump)
			mu.Unlock()
			nc, err := ns.DialContext(ctx, "tcp", joinHostPort(p.ServerAddress.String(), p.ServerRSDPort))
			if err != nil {
				errs <- err
				return
			}
			c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: xpc.UUID{1}})
			if err != nil {
				errs <- err
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(t2).Seconds(), "tunnels-s")
	b.ReportMetric((cpuTime() - cpu2).Seconds(), "tunnels-cpu-s")
	runtime.GC()
	b.ReportMetric(float64(memInUse()-mem1)/(1<<20), "tunnels-MiB")
	b.ReportMetric(float64(rssBytes())/(1<<20), "tunnels-rss-MiB")
	cpu3, t3 := cpuTime(), time.Now()
	time.Sleep(3 * time.Second)
	b.ReportMetric(100*(cpuTime()-cpu3).Seconds()/time.Since(t3).Seconds(), "tunnels-idle-cpu-%")
	for _, p := range pumps {
		p.Close()
	}
}

// memInUse is Go heap and stack memory in use: unlike the resident set it
// drops when memory is freed, so deltas within one process are meaningful.
func memInUse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// rssBytes is the process's resident set (Linux /proc/self/statm).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
