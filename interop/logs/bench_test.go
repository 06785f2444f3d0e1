package logs_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/sim"
)

// syslogClient is one of the three clients measured: a command line that
// streams the device's log to stdout, a line per log line, and how many
// lines it prints before the first log line.
type syslogClient struct {
	name   string
	argv   func(r *rig) []string
	env    func(r *rig) []string
	header int
}

func syslogClients(t testing.TB) []syslogClient {
	iosmux := buildIOSMux(t)
	goios := filepath.Join(t.TempDir(), "goiossyslog")
	build := exec.Command("go", "build", "-o", goios, "./logs/goiossyslog")
	build.Dir = testenv.ModuleDir()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building goiossyslog: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("idevicesyslog"); err != nil {
		t.Fatalf("idevicesyslog not installed (scripts/setup.sh installs libimobiledevice-utils): %v", err)
	}
	return []syslogClient{
		{name: "iosmux", argv: func(r *rig) []string {
			return []string{iosmux, "syslog", "--usbmux-address", r.f.UsbmuxSocket(), "--udid", r.d.UDID()}
		}},
		{name: "go-ios", argv: func(r *rig) []string { return []string{goios, r.d.UDID()} },
			env: func(r *rig) []string { return []string{"USBMUXD_SOCKET_ADDRESS=unix://" + r.f.UsbmuxSocket()} }},
		{name: "idevicesyslog", argv: func(r *rig) []string { return []string{"idevicesyslog", "-u", r.d.UDID(), "--no-colors"} },
			env:    func(r *rig) []string { return []string{"USBMUXD_SOCKET_ADDRESS=UNIX:" + r.f.UsbmuxSocket()} },
			header: 1}, // "[connected]"
	}
}

// BenchmarkSyslogClients streams the same b.N lines of the simulated
// device's log (chatter, as fast as each client reads: the device waits
// rather than drops) to iosmux syslog, go-ios's syslog client and
// libimobiledevice's idevicesyslog in turn, each a process of its own
// reaching the device through usbmuxd (lockdown, service TLS), and
// reports lines/s and the client's CPU time per million lines. docs/perf.md
// has a run:
//
//	cd interop && go test -run '^$' -bench SyslogClients -benchtime 1000000x ./logs/
func BenchmarkSyslogClients(b *testing.B) {
	clients := syslogClients(b)
	r := newRig(b, sim.FleetConfig{})
	results := map[string][2]float64{}
	for _, c := range clients {
		b.Run(c.name, func(b *testing.B) {
			rate, cpu := runSyslogClient(b, r, c, b.N)
			b.ReportMetric(rate, "lines/s")
			b.ReportMetric(cpu.Seconds()*1e3*1e6/float64(b.N), "cpu-ms/Mlines")
			b.ReportMetric(0, "ns/op")
			results[c.name] = [2]float64{rate, cpu.Seconds() / float64(b.N)}
		})
	}
	if io, ok := results["iosmux"]; ok {
		for _, peer := range []string{"go-ios", "idevicesyslog"} {
			if p, ok := results[peer]; ok && p[0] > 0 && io[1] > 0 {
				b.Logf("iosmux vs %s: %.2f× the lines/s, %.2f× less CPU per line", peer, io[0]/p[0], p[1]/io[1])
			}
		}
	}
}

// runSyslogClient starts c, floods n lines and waits until c has printed
// them all; it returns lines/s and the CPU c spent on them.
func runSyslogClient(b *testing.B, r *rig, c syslogClient, n int) (float64, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	argv := c.argv(r)
	cmd := exec.Command(argv[0], argv[1:]...)
	if c.env != nil {
		cmd.Env = append(os.Environ(), c.env(r)...)
	}
	out := &lineCounter{}
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
		r.d.Logs().WaitSubscribers(ctx, 0)
	}()
	if err := r.d.Logs().WaitSubscribers(ctx, 1); err != nil {
		b.Fatal(err)
	}
	for {
		if k, _ := out.count(); k >= c.header {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cpu0 := testkit.PIDCPU(b, cmd.Process.Pid)
	meter := testkit.StartCPUMeter(b, cmd.Process.Pid)
	b.ResetTimer()
	start := time.Now()
	flood := make(chan error, 1)
	go func() { flood <- r.d.FloodLogs(ctx, n) }()
	want := n + c.header
	for {
		k, last := out.count()
		if k >= want {
			break
		}
		select {
		case err := <-done:
			b.Fatalf("%s ended after %d of %d lines: %v (last %q)", c.name, k, want, err, last)
		case <-ctx.Done():
			b.Fatalf("%s printed %d of %d lines", c.name, k, want)
		case <-time.After(time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if err := <-flood; err != nil {
		b.Fatal(err)
	}
	cpu1 := testkit.PIDCPU(b, cmd.Process.Pid)
	// Which side was the limit: the client's CPU share and this
	// process's (the device and the line counter), 1 = one core.
	sh := meter.Shares(b)
	b.ReportMetric(sh.Procs[0], "client-cpu-share")
	b.ReportMetric(sh.Self, "device-cpu-share")
	if k, _ := out.count(); k != want {
		b.Errorf("%s printed %d lines, want %d", c.name, k, want)
	}
	return float64(n) / elapsed.Seconds(), cpu1 - cpu0
}
