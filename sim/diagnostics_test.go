package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/services/crash"
)

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{"iPhone (sim 1)": "iPhone-sim-1", "John's iPhone": "John-s-iPhone", "": "iPhone", "日本": "iPhone", "a--b": "a-b"} {
		if got := HostName(in); got != want {
			t.Errorf("HostName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestProcesses: launches number from 300, signals follow their default
// actions, and launchd cannot be killed.
func TestProcesses(t *testing.T) {
	pt := newProcesses(time.Now)
	var events []ProcessEvent
	pt.Observe(func(ev ProcessEvent) { events = append(events, ev) })
	base := len(pt.List())
	if base != len(systemDaemons) || pt.List()[0].PID != 1 || pt.List()[0].Name != "launchd" {
		t.Fatalf("boot table %+v", pt.List())
	}
	p, err := pt.Launch(Launch{Path: "/x/Demo.app/Demo", BundleID: "com.example.demo", Stopped: true})
	if err != nil || p.PID != firstAppPID || p.Name != "Demo" || p.State != ProcessStopped {
		t.Fatalf("Launch = %+v, %v", p, err)
	}
	steps := []struct {
		sig  Signal
		want ProcessState
	}{{SIGCONT, ProcessRunning}, {SIGCHLD, ProcessRunning}, {SIGSTOP, ProcessStopped}, {SIGCONT, ProcessRunning}, {SIGSEGV, ProcessExited}}
	for _, s := range steps {
		if err := pt.Signal(p.PID, s.sig); err != nil {
			t.Fatal(err)
		}
		if got, _ := pt.Get(p.PID); got.State != s.want {
			t.Fatalf("after %s: %s, want %s", s.sig, got.State, s.want)
		}
	}
	if got, _ := pt.Get(p.PID); got.Signal != SIGSEGV || !got.Signal.Crashes() {
		t.Errorf("exited process %+v", got)
	}
	if err := pt.Signal(p.PID, SIGKILL); !errors.Is(err, ErrNoProcess) {
		t.Errorf("signal to an exited process: %v", err)
	}
	if err := pt.Signal(1, SIGKILL); err != nil || len(pt.List()) != base {
		t.Errorf("launchd: %v, %d processes", err, len(pt.List()))
	}
	kinds := []ProcessEventKind{ProcessLaunched, ProcessContinued, ProcessStoppedEvent, ProcessContinued, ProcessExitedEvent}
	if len(events) != len(kinds) {
		t.Fatalf("%d events, want %d", len(events), len(kinds))
	}
	for i, k := range kinds {
		if events[i].Kind != k {
			t.Errorf("event %d: %d, want %d", i, events[i].Kind, k)
		}
	}
	for range keepExited + 10 {
		q, _ := pt.Launch(Launch{Path: "/bin/x"})
		pt.Exit(q.PID)
	}
	if _, ok := pt.Get(p.PID); ok {
		t.Error("the table keeps every exited process")
	}
	pt.reset()
	if len(pt.List()) != base {
		t.Errorf("after reset %d processes", len(pt.List()))
	}
}

// TestLogsQueue: a connection that does not read loses the lines beyond
// its queue, and they are counted; one that reads loses none.
func TestLogsQueue(t *testing.T) {
	l := newLogs("iPhone", time.Now)
	slow := l.subscribe()
	fast := l.subscribe()
	got := 0
	for range 3 {
		batch := make([]LogLine, logQueue/2)
		for i := range batch {
			batch[i] = LogLine{Path: "/usr/libexec/logd", Message: "m"}
		}
		l.Write(batch...)
		lines, err := fast.take(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got += len(lines)
	}
	st := l.Stats()
	if got != 3*logQueue/2 || st.Written != uint64(got) || st.Dropped != uint64(logQueue/2) || st.Subscribers != 2 {
		t.Errorf("fast got %d; stats %+v", got, st)
	}
	l.unsubscribe(slow)
	if st := l.Stats(); st.Dropped != uint64(logQueue/2) || st.Subscribers != 1 {
		t.Errorf("after the slow one left: %+v", st)
	}
	if l.Count("logd") != uint64(got) || l.Count("other") != 0 {
		t.Errorf("Count = %d", l.Count("logd"))
	}
}

// TestChatter: the chatter keeps its rate (within the slack of one
// second's start-up), stops at rate 0, and writes lines of the running
// daemons.
func TestChatter(t *testing.T) {
	l := newLogs("iPhone", time.Now)
	pt := newProcesses(time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.runChatter(ctx, pt) }()
	defer func() { cancel(); <-done }()
	rec := l.Record()
	start := time.Now()
	l.SetRate(2000)
	time.Sleep(500 * time.Millisecond)
	l.SetRate(0)
	elapsed := time.Since(start)
	time.Sleep(50 * time.Millisecond)
	lines := rec.Stop()
	if max := int(2000*elapsed.Seconds()) + 20; len(lines) == 0 || len(lines) > max {
		t.Fatalf("%d lines in %v at 2000/s (at most %d)", len(lines), elapsed, max)
	}
	n := l.Stats().Written
	time.Sleep(50 * time.Millisecond)
	if l.Stats().Written != n {
		t.Error("chatter went on at rate 0")
	}
	for i, line := range lines {
		if line.Seq != uint64(i+1) || line.PID == 0 || line.Message == "" {
			t.Fatalf("line %d: %+v", i, line)
		}
	}
}

// TestCrashReport: killing an app with a crashing signal saves a report
// in the crash folder, then logs the line a watcher looks for; SIGKILL
// saves none.
func TestCrashReport(t *testing.T) {
	r := newRig(t)
	d := r.device(t, Config{})
	rec := d.Logs().Record()
	p, err := d.Processes().Launch(Launch{Path: "/private/var/containers/Bundle/Application/X/Demo.app/Demo", BundleID: "com.example.demo"})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := d.Processes().Launch(Launch{Path: "/x/Other.app/Other"})
	if err := d.Processes().Signal(q.PID, SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := d.Processes().Signal(p.PID, SIGABRT); err != nil {
		t.Fatal(err)
	}
	lines := rec.Stop()
	var saved string
	for _, l := range lines {
		if name, ok := crash.SavedReport(l.Path, l.Image, l.Message); ok {
			if saved != "" {
				t.Errorf("two reports announced: %s, %s", saved, name)
			}
			saved = name
		}
	}
	if !strings.HasPrefix(saved, "Demo-") {
		t.Fatalf("no report announced for Demo in %d lines", len(lines))
	}
	b, err := os.ReadFile(filepath.Join(d.CrashFolder(), saved))
	if err != nil {
		t.Fatal(err)
	}
	h, body, err := crash.ParseHeader(b)
	if err != nil || h.Name != "Demo" || h.BugType != "309" || h.BundleID != "com.example.demo" || !strings.Contains(string(body), `"SIGABRT"`) {
		t.Errorf("report %+v, %v", h, err)
	}
	entries, _ := os.ReadDir(d.CrashFolder())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	for _, want := range []string{"SimApp-2026-01-01-120000.ips", "Retired", "DiagnosticLogs", appstored, saved} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("crash folder %v lacks %s", names, want)
		}
	}
	if strings.Contains(strings.Join(names, " "), "Other-") {
		t.Error("SIGKILL left a crash report")
	}
	// The seeded report parses as pycrashreport's user-mode crash.
	b, _ = os.ReadFile(filepath.Join(d.CrashFolder(), "SimApp-2026-01-01-120000.ips"))
	if h, _, err := crash.ParseHeader(b); err != nil || h.Kind() != "crash" {
		t.Errorf("seeded report: %+v, %v", h, err)
	}
	dir := d.CrashFolder()
	d.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary crash folder outlived the device: %v", err)
	}
}

// TestFlood: a reader slower than the flood loses nothing.
func TestFlood(t *testing.T) {
	l := newLogs("iPhone", time.Now)
	s := l.subscribe()
	const n = 3 * logQueue
	got := make(chan int)
	go func() {
		total := 0
		for total < n {
			lines, err := s.take(context.Background(), nil)
			if err != nil {
				break
			}
			total += len(lines)
			time.Sleep(time.Millisecond)
		}
		got <- total
	}()
	if err := l.Flood(context.Background(), newProcesses(time.Now), n); err != nil {
		t.Fatal(err)
	}
	if total := <-got; total != n || l.Stats().Dropped != 0 {
		t.Errorf("read %d of %d, dropped %d", total, n, l.Stats().Dropped)
	}
}

// TestControlDiagnostics: the control endpoint sets the log rate, launches
// and signals processes (a crashing signal leaves a report) and refuses
// bad requests.
func TestControlDiagnostics(t *testing.T) {
	f, err := StartFleet(FleetConfig{Count: 1, Profile: MustProfile("17.4"), LockdownKey: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv := httptest.NewServer(f.Handler())
	defer srv.Close()
	d := f.Devices()[0]
	post := func(path string) int {
		resp, err := http.Post(srv.URL+"/devices/"+d.UDID()+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/lograte?rate=250"); code != 200 || d.Logs().Rate() != 250 {
		t.Errorf("lograte: %d, rate %v", code, d.Logs().Rate())
	}
	resp, err := http.Get(srv.URL + "/devices/" + d.UDID() + "/logs?process=launchd&process=nobody")
	if err != nil {
		t.Fatal(err)
	}
	var ls LogStatus
	json.NewDecoder(resp.Body).Decode(&ls)
	resp.Body.Close()
	if ls.Rate != 250 || ls.Written == 0 || ls.Lines["launchd"] == 0 || ls.Lines["nobody"] != 0 {
		t.Errorf("GET logs = %+v", ls)
	}
	post("/lograte?rate=0")
	if code := post("/launch?path=/x/Demo.app/Demo&bundle=com.example.demo"); code != 200 {
		t.Fatalf("launch: %d", code)
	}
	ps := d.Processes().Find("com.example.demo")
	if len(ps) != 1 {
		t.Fatalf("launched %v", ps)
	}
	if code := post(fmt.Sprintf("/signal?pid=%d&signal=segv", ps[0].PID)); code != 200 {
		t.Fatalf("signal: %d", code)
	}
	if !slices.ContainsFunc(mustReadDir(d.CrashFolder()), func(n string) bool { return strings.HasPrefix(n, "Demo-") }) {
		t.Errorf("no report after SIGSEGV: %v", mustReadDir(d.CrashFolder()))
	}
	for _, bad := range []string{"/lograte?rate=x", "/launch", "/signal?pid=1&signal=SIGFOO", "/signal?pid=99999&signal=9", "/post"} {
		if code := post(bad); code < 400 {
			t.Errorf("%s: %d, want an error", bad, code)
		}
	}
	if code := post("/post?name=com.example.x"); code != 200 {
		t.Errorf("post: %d", code)
	}
	for in, want := range map[string]Signal{"SIGSEGV": SIGSEGV, "kill": SIGKILL, "19": SIGCONT} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v", in, got, err)
		}
	}
}

// TestDDIMountedEvent: a mount is logged and posted once, an unmount
// logged; other mounter changes (a nonce, a manifest) log nothing.
func TestDDIMountedEvent(t *testing.T) {
	r := newRig(t)
	d := r.device(t, Config{})
	rec := d.Logs().Record()
	d.diag.ddiMounted(true)
	d.diag.ddiMounted(true)
	d.diag.ddiMounted(false)
	d.diag.ddiMounted(false)
	var msgs []string
	for _, l := range rec.Stop() {
		if l.Process() == "mobile_storage_proxy" && l.PID != 0 {
			msgs = append(msgs, l.Message)
		}
	}
	if len(msgs) != 2 || !strings.Contains(msgs[0], "mounted") || !strings.Contains(msgs[1], "unmounted") {
		t.Errorf("logged %q", msgs)
	}
	if n := d.Notifications().Posts("com.apple.mobile.developer_image_mounted"); n != 1 {
		t.Errorf("developer_image_mounted posted %d times", n)
	}
}
