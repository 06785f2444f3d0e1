package logs_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/iosmux/iosmux/sim"
)

var loadDuration = flag.Duration("syslog-load", 5*time.Second,
	"how long TestSyslogLoad streams 20 000 lines/s (docs/perf.md records a 60 s run)")

// loadRate is the acceptance's stream: 20 000 lines a second.
const loadRate = 20000

// maxRSS bounds iosmux's peak memory under the load: what it reads, it
// prints and forgets.
const maxRSS = 96 << 20

// TestSyslogLoad: `iosmux syslog --process locationd` through usbmuxd
// (lockdown, service TLS) keeps up with a 20 000 lines/s stream for
// -syslog-load (5 s by default): every locationd line the device wrote is
// printed (count checked), the device never had to drop a line for it,
// and its peak memory stays bounded. The 60 s run of docs/perf.md:
//
//	cd interop && go test -run TestSyslogLoad -v ./logs/ -args -syslog-load 60s
func TestSyslogLoad(t *testing.T) {
	bin := buildIOSMux(t)
	r := newRig(t, sim.FleetConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), *loadDuration+2*time.Minute)
	defer cancel()

	out := &lineCounter{match: []byte(" locationd[")}
	cmd := exec.Command(bin, "syslog", "--usbmux-address", r.f.UsbmuxSocket(), "--udid", r.d.UDID(), "--process", "locationd")
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	if err := r.d.Logs().WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	logs := r.d.Logs()
	before, written0 := logs.Count("locationd"), logs.Stats().Written
	start := time.Now()
	logs.SetRate(loadRate)
	time.Sleep(*loadDuration)
	logs.SetRate(0)
	elapsed := time.Since(start)
	time.Sleep(50 * time.Millisecond) // the chatter's last tick
	want := int(logs.Count("locationd") - before)
	written := logs.Stats().Written - written0
	if rate := float64(written) / elapsed.Seconds(); rate < 0.95*loadRate {
		t.Fatalf("the simulator wrote only %.0f lines/s (%d in %v): the load was not applied", rate, written, elapsed)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, _ := out.count()
		if n >= want || time.Now().After(deadline) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("iosmux syslog ended: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	caughtUp := time.Since(start) - elapsed
	rss, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := cpuTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	n, last := out.count()
	st := logs.Stats()
	t.Logf("%d lines in %v (%.0f/s), %d of them locationd; iosmux printed %d, caught up %v after the stream stopped; CPU %v (%.1f%% of a core); peak RSS %.1f MiB; dropped %d",
		written, elapsed.Round(time.Millisecond), float64(written)/elapsed.Seconds(), want, n, caughtUp.Round(time.Millisecond),
		cpu, 100*cpu.Seconds()/elapsed.Seconds(), float64(rss)/(1<<20), st.Dropped)
	if n != want {
		t.Errorf("iosmux printed %d locationd lines, the device wrote %d (last: %q)", n, want, last)
	}
	if st.Dropped != 0 {
		t.Errorf("the device dropped %d lines because iosmux fell behind", st.Dropped)
	}
	if rss > maxRSS {
		t.Errorf("peak RSS %d MiB, want at most %d", rss>>20, maxRSS>>20)
	}
}
