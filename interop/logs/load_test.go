package logs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/usbmux"
)

var loadDuration = flag.Duration("syslog-load", 5*time.Second,
	"how long TestSyslogLoad streams 20 000 lines/s (docs/perf.md records a 60 s run)")

// loadRate is the acceptance's stream: 20 000 lines a second.
const loadRate = 20000

// maxRSS bounds iosmux's peak memory under the load: what it reads, it
// prints and forgets.
const maxRSS = 96 << 20

// simProcess is `iosmux sim` run as a process of its own, driven through
// its control endpoint on a UNIX socket.
type simProcess struct {
	dir     string
	socket  string // usbmuxd
	control *http.Client
	udid    string
}

func startSimProcess(t testing.TB, bin string) *simProcess {
	t.Helper()
	dir, err := os.MkdirTemp("", "logs-load-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &simProcess{dir: dir, socket: filepath.Join(dir, "usbmuxd")}
	ctrl := filepath.Join(dir, "control")
	cmd := exec.Command(bin, "sim", "--profile", "17.4", "--socket", s.socket, "--control", "unix:"+ctrl, "--tss", "none")
	var mu sync.Mutex
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = lockedWriter{&mu, &output}, lockedWriter{&mu, &output}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("iosmux sim said:\n%s", output.String())
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	s.control = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", ctrl)
		}}}
	var devs []struct{ UDID string }
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := s.get("/devices", &devs); err == nil && len(devs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("iosmux sim did not come up")
		}
	}
	s.udid = devs[0].UDID
	return s
}

func (s *simProcess) get(path string, v any) error {
	resp, err := s.control.Get("http://sim" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (s *simProcess) post(t testing.TB, path string) {
	t.Helper()
	resp, err := s.control.Post("http://sim/devices/"+s.udid+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}

func (s *simProcess) logs(t testing.TB) sim.LogStatus {
	t.Helper()
	var st sim.LogStatus
	if err := s.get("/devices/"+s.udid+"/logs?process=locationd", &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSyslogLoad: `iosmux syslog --process locationd` through usbmuxd
// (lockdown, service TLS) keeps up with a 20 000 lines/s stream for
// -syslog-load (5 s by default): every locationd line the device wrote is
// printed (count checked), the device never had to drop a line for it,
// and its peak memory stays bounded. The simulated iPhone is `iosmux sim`
// in a process of its own, so that the race detector of the test binary
// slows neither side. The 60 s run of docs/perf.md:
//
//	cd interop && go test -run TestSyslogLoad -v ./logs/ -args -syslog-load 60s
func TestSyslogLoad(t *testing.T) {
	bin := buildIOSMux(t)
	s := startSimProcess(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), *loadDuration+2*time.Minute)
	defer cancel()
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: s.socket}})
	list, err := mux.ListDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dev, ok := usbmux.FindDevice(list, s.udid)
	if !ok {
		t.Fatalf("usbmuxd does not list %s", s.udid)
	}
	if _, err := lockdown.PairUsbmux(ctx, mux, dev, lockdown.PairOptions{HostName: "logs-load"}); err != nil {
		t.Fatal(err)
	}

	out := &lineCounter{match: []byte(" locationd[")}
	cmd := exec.Command(bin, "syslog", "--usbmux-address", s.socket, "--udid", s.udid, "--process", "locationd")
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
	for st := s.logs(t); st.Subscribers == 0; st = s.logs(t) {
		if ctx.Err() != nil {
			t.Fatal("iosmux syslog never connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := s.logs(t)
	start := time.Now()
	s.post(t, fmt.Sprintf("/lograte?rate=%d", loadRate))
	time.Sleep(*loadDuration)
	s.post(t, "/lograte?rate=0")
	elapsed := time.Since(start)
	time.Sleep(50 * time.Millisecond) // the chatter's last tick
	after := s.logs(t)
	want := int(after.Lines["locationd"] - before.Lines["locationd"])
	written := after.Written - before.Written
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
	cpu := testkit.PIDCPU(t, cmd.Process.Pid)
	n, last := out.count()
	dropped := after.Dropped - before.Dropped
	t.Logf("%d lines in %v (%.0f/s), %d of them locationd; iosmux printed %d, caught up %v after the stream stopped; CPU %v (%.1f%% of a core); peak RSS %.1f MiB; dropped %d",
		written, elapsed.Round(time.Millisecond), float64(written)/elapsed.Seconds(), want, n, caughtUp.Round(time.Millisecond),
		cpu, 100*cpu.Seconds()/elapsed.Seconds(), float64(rss)/(1<<20), dropped)
	if n != want {
		t.Errorf("iosmux printed %d locationd lines, the device wrote %d (last: %q)", n, want, last)
	}
	if dropped != 0 {
		t.Errorf("the device dropped %d lines because iosmux fell behind", dropped)
	}
	if rss > maxRSS {
		t.Errorf("peak RSS %d MiB, want at most %d", rss>>20, maxRSS>>20)
	}
}
