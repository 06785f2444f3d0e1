package launch_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/interop/internal/netns"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/xpc"
	"github.com/vishvananda/netlink"
)

// netnsEnv marks the re-executed test inside its network namespace and
// carries the iosmux binary's path.
const netnsEnv = "IOSMUX_LAUNCH_INTEROP_NETNS"

// TestLaunchInterop runs the acceptance in a network namespace of its own.
func TestLaunchInterop(t *testing.T) {
	if os.Getenv(netnsEnv) != "" {
		inNetns(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root for a network namespace and a kernel tunnel (CI runs as root)")
	}
	for _, bin := range []string{"lldb", "node"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed (scripts/setup.sh installs it): %v", bin, err)
		}
	}
	bin := buildIOSMux(t, t.TempDir())
	netns.RunTest(t, "TestLaunchInterop", 5*time.Minute, netnsEnv+"="+bin)
}

func inNetns(t *testing.T) {
	bin := os.Getenv(netnsEnv)
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 4*time.Minute)
	f, d := startDevice(t, sim.Realism{})
	records, state := t.TempDir(), t.TempDir()

	// A kernel tunnel: tunneld as `iosmux tunneld` runs it as root.
	dm := startTunneld(t, f, false, records)
	rsdAddr := dm.rsd(t, ctx, d.UDID())
	ro, err := reach.NewRSD(ctx, nil, rsdAddr, reach.RSDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	mount(t, ctx, ro)
	if _, err := ro.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	target := []string{"--tunnel", d.UDID(), "--tunneld", dm.pmd3(), "--state-dir", state}
	env := []string{"IOSMUX_TUNNELD_GOIOS=" + dm.goios()}

	t.Run("appium", func(t *testing.T) { appiumAcceptance(t, d, ro) })
	t.Run("console", func(t *testing.T) { console(t, bin, env, target) })
	t.Run("lldb kernel tunnel", func(t *testing.T) { lldbPasted(t, bin, env, target, d) })
	t.Run("lldb run by iosmux", func(t *testing.T) { lldbRun(t, bin, env, target, d) })

	// A userspace tunnel: a new tunneld with --userspace; iosmux finds its
	// proxy in the go-ios API.
	dm.stop()
	dm = startTunneld(t, f, true, records)
	dm.rsd(t, ctx, d.UDID())
	target = []string{"--tunnel", d.UDID(), "--tunneld", dm.pmd3(), "--state-dir", state}
	env = []string{"IOSMUX_TUNNELD_GOIOS=" + dm.goios()}
	t.Run("lldb userspace tunnel", func(t *testing.T) { lldbPasted(t, bin, env, target, d) })

	// The same tunnel through go-ios's userspace proxy, as a client of
	// start-tunnel --userspace reaches it: the tunnel's own address, every
	// connection through the proxy.
	gt, err := (&rsdapi.GoIOSClient{Addr: dm.goios()}).Tunnel(ctx, d.UDID())
	if err != nil || !gt.Userspace || gt.UserspacePort == 0 {
		t.Fatalf("go-ios API: %+v %v", gt, err)
	}
	target = []string{"--rsd", gt.Address, strconv.Itoa(gt.RSDPort), "--userspace-proxy", "127.0.0.1:" + strconv.Itoa(gt.UserspacePort), "--state-dir", state}
	t.Run("lldb userspace proxy", func(t *testing.T) { lldbPasted(t, bin, nil, target, d) })
}

// appiumApp is an app dictionary as appium parses it.
type appiumApp struct {
	BundleIdentifier string `json:"bundleIdentifier"`
	Name             string `json:"name"`
	Version          string `json:"version"`
	BundleVersion    string `json:"bundleVersion"`
	Path             string `json:"path"`
	IsRemovable      bool   `json:"isRemovable"`
	IsFirstParty     bool   `json:"isFirstParty"`
	IsDeveloperApp   bool   `json:"isDeveloperApp"`
	IsInternal       bool   `json:"isInternal"`
	IsHidden         bool   `json:"isHidden"`
	IsAppClip        bool   `json:"isAppClip"`
}

type appiumToken struct {
	ProcessIdentifier int `json:"processIdentifier"`
	ExecutableURL     struct {
		Relative string `json:"relative"`
	} `json:"executableURL"`
}

// appiumAcceptance: appium's AppService and CoreDeviceInfoService over
// RSD list apps, launch the installed app, list processes, signal it; each
// reply appium parsed equals what the simulated iPhone holds.
func appiumAcceptance(t *testing.T, d *sim.Device, ro *reach.RSD) {
	ctx := testCtx(t, time.Minute)
	host, port := ro.Addr().Addr().String(), strconv.Itoa(int(ro.Addr().Port()))
	out := node(t, ctx, "appium_appservice.mjs", "acceptance", d.UDID(), host, port, demoApp)
	var got struct {
		Apps     []appiumApp `json:"apps"`
		Launched struct {
			appiumToken
			ProcessIdentifierVersion string   `json:"processIdentifierVersion"`
			AuditToken               []string `json:"auditToken"`
			ProcessToken             struct {
				ProcessIdentifier int `json:"processIdentifier"`
			} `json:"processToken"`
		} `json:"launched"`
		Processes []appiumToken `json:"processes"`
		AfterStop []appiumToken `json:"afterStop"`
		AfterTerm []appiumToken `json:"afterTerm"`
		Stop      json.RawMessage
		Term      struct {
			Process appiumToken `json:"process"`
			Signal  int         `json:"signal"`
		} `json:"term"`
		DeadSignal  string         `json:"deadSignal"`
		Missing     string         `json:"missing"`
		DeviceInfo  map[string]any `json:"deviceInfo"`
		DisplayInfo struct {
			Displays []struct {
				DisplayID  int       `json:"displayId"`
				Name       string    `json:"name"`
				NativeSize []float64 `json:"nativeSize"`
				Primary    bool      `json:"primary"`
			} `json:"displays"`
		} `json:"displayInfo"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("appium's output %s: %v", out, err)
	}

	// listapps: one entry per app of the registry, with its facts.
	recs := d.Apps().Records()
	if len(got.Apps) != len(recs) {
		t.Errorf("appium listed %d apps, the device holds %d", len(got.Apps), len(recs))
	}
	for _, rec := range recs {
		i := slices.IndexFunc(got.Apps, func(a appiumApp) bool { return a.BundleIdentifier == rec.BundleID })
		if i < 0 {
			t.Errorf("appium's list lacks %s", rec.BundleID)
			continue
		}
		a := got.Apps[i]
		info := func(k string) string { s, _ := rec.Info[k].(string); return s }
		if a.Path != rec.App().Path() || a.Version != info("CFBundleShortVersionString") || a.BundleVersion != info("CFBundleVersion") ||
			a.IsRemovable == rec.System || a.IsDeveloperApp != rec.Developer || a.IsFirstParty != rec.System || a.Name != info("CFBundleDisplayName") {
			t.Errorf("appium read %+v; the device holds %+v %v", a, rec, rec.Info)
		}
	}

	// launchapplication: the pid appium read is the app's process.
	pid := got.Launched.ProcessToken.ProcessIdentifier
	p, ok := d.Processes().Get(pid)
	if pid == 0 || got.Launched.ProcessIdentifier != pid || !ok || p.BundleID != demoApp {
		t.Fatalf("appium launched pid %d (%d); the device holds %+v (%v)", pid, got.Launched.ProcessIdentifier, p, ok)
	}
	// listprocesses right after the launch: the device's table then (the
	// app has ended since, nothing else has changed).
	table := d.Processes().List()
	wantPIDs := []int{pid}
	for _, q := range table {
		wantPIDs = append(wantPIDs, q.PID)
	}
	slices.Sort(wantPIDs)
	var gotPIDs []int
	for _, q := range got.Processes {
		gotPIDs = append(gotPIDs, q.ProcessIdentifier)
		dp, _ := d.Processes().Get(q.ProcessIdentifier)
		if q.ExecutableURL.Relative != "file://"+dp.Path {
			t.Errorf("pid %d: appium read %q, the device holds %q", q.ProcessIdentifier, q.ExecutableURL.Relative, dp.Path)
		}
	}
	slices.Sort(gotPIDs)
	if !slices.Equal(gotPIDs, wantPIDs) {
		t.Errorf("appium listed pids %v, the device held %v", gotPIDs, wantPIDs)
	}
	// sendsignaltoprocess: SIGSTOP left it listed, SIGTERM ended it.
	has := func(l []appiumToken) bool {
		return slices.ContainsFunc(l, func(q appiumToken) bool { return q.ProcessIdentifier == pid })
	}
	if !has(got.AfterStop) || has(got.AfterTerm) {
		t.Errorf("after SIGSTOP listed %v, after SIGTERM %v", has(got.AfterStop), has(got.AfterTerm))
	}
	if got.Term.Signal != 15 || got.Term.Process.ProcessIdentifier != pid || got.Term.Process.ExecutableURL.Relative != "file://"+p.Path {
		t.Errorf("appium read the SIGTERM reply as %+v", got.Term)
	}
	if p, _ := d.Processes().Get(pid); p.State != sim.ProcessExited || p.Signal != sim.SIGTERM {
		t.Errorf("the device holds %+v after SIGTERM", p)
	}
	if !strings.Contains(got.DeadSignal, "No such process") || !strings.Contains(got.DeadSignal, "com.apple.dt.CoreDeviceError") {
		t.Errorf("a signal to the ended pid: %q", got.DeadSignal)
	}
	if !strings.Contains(got.Missing, "is not installed") || !strings.Contains(got.Missing, "10002") {
		t.Errorf("launch of a missing app: %q", got.Missing)
	}

	// deviceinfo: the RSD Properties; the one display.
	props := ro.Handshake().Properties
	n := 0
	for k, v := range props.All() {
		if s, ok := v.(xpc.String); ok {
			n++
			if got.DeviceInfo[k] != string(s) {
				t.Errorf("getdeviceinfo %s = %v, the device's RSD says %q", k, got.DeviceInfo[k], s)
			}
		}
	}
	if n < 5 || got.DeviceInfo["UniqueDeviceID"] != d.UDID() {
		t.Errorf("getdeviceinfo %v (%d string properties compared)", got.DeviceInfo, n)
	}
	if len(got.DisplayInfo.Displays) != 1 {
		t.Fatalf("displays %+v", got.DisplayInfo)
	}
	dp := got.DisplayInfo.Displays[0]
	if dp.DisplayID != 1 || dp.Name != "Built-in Display" || !slices.Equal(dp.NativeSize, []float64{1290, 2796}) || !dp.Primary {
		t.Errorf("display %+v", dp)
	}
}

// console: `iosmux apps launch --console` shows the app's output line.
func console(t *testing.T, bin string, env, target []string) {
	ctx := testCtx(t, time.Minute)
	s := start(t, ctx, env, bin, append([]string{"apps", "launch", demoApp, "--console"}, target...)...)
	s.expect(`launched com\.example\.demo as pid \d+`, 30*time.Second)
	s.expect(`hello from com\.example\.demo\n`, 30*time.Second)
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("apps launch --console did not end on an interrupt")
	}
	if !s.cmd.ProcessState.Success() {
		t.Errorf("apps launch --console exited %v", s.cmd.ProcessState)
	}
}

// launchStopped starts the app suspended with `iosmux apps launch` and
// returns its pid.
func launchStopped(t *testing.T, bin string, env, target []string, d *sim.Device) int {
	ctx := testCtx(t, time.Minute)
	pid := pidOf(t, iosmux(t, ctx, bin, env, append([]string{"apps", "launch", demoApp, "--stopped", "--json"}, target...)...))
	waitState(t, d, pid, sim.ProcessStopped)
	return pid
}

// lldbPasted: `iosmux debugserver` prints the commands; lldb, given them
// as a user pastes them, connects, attaches to the stopped app, shows it
// stopped, continues it, and sees it exit when iosmux sends SIGTERM.
func lldbPasted(t *testing.T, bin string, env, target []string, d *sim.Device) {
	ctx := testCtx(t, 2*time.Minute)
	pid := launchStopped(t, bin, env, target, d)
	srv := start(t, ctx, env, bin, append([]string{"debugserver", "--json"}, target...)...)
	m := srv.expect(`"connect": "(connect://127\.0\.0\.1:\d+)"`, 30*time.Second)
	connect := m[1]
	srv.expect(`"lldbCommands"`, 5*time.Second)

	lldb := start(t, ctx, nil, "lldb")
	lldb.send("platform select remote-ios")
	lldb.send("process connect " + connect)
	// Typed commands run asynchronously: wait until the connection is up
	// (the process leaves "unloaded") before attaching.
	settled := false
	for range 60 {
		lldb.send("process status")
		if m := lldb.expect(`Process \d+ (\w+)`, 30*time.Second); m[1] != "unloaded" {
			settled = true
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !settled {
		t.Fatalf("lldb never connected:\n%s", lldb.output())
	}
	lldb.send(fmt.Sprintf("process attach --pid %d", pid))
	lldb.expect(fmt.Sprintf(`Process %d stopped`, pid), 30*time.Second)
	lldb.send("process status")
	lldb.expect(fmt.Sprintf(`Process %d stopped\s*\n\* thread #1, stop reason = signal SIGSTOP`, pid), 30*time.Second)
	if p, _ := d.Processes().Get(pid); p.State != sim.ProcessStopped {
		t.Errorf("attached: the device holds %v", p.State)
	}
	lldb.send("continue")
	lldb.expect(fmt.Sprintf(`Process %d resuming`, pid), 30*time.Second)
	waitState(t, d, pid, sim.ProcessRunning)
	iosmux(t, ctx, bin, env, append([]string{"processes", "signal", strconv.Itoa(pid), "TERM"}, target...)...)
	lldb.expect(fmt.Sprintf(`Process %d exited with status = 0`, pid), 30*time.Second)
	if p, _ := d.Processes().Get(pid); p.State != sim.ProcessExited || p.Signal != sim.SIGTERM {
		t.Errorf("after SIGTERM the device holds %+v", p)
	}
	lldb.send("quit")
	select {
	case <-lldb.done:
	case <-time.After(20 * time.Second):
		t.Errorf("lldb did not quit:\n%s", lldb.output())
	}
	srv.cmd.Process.Signal(os.Interrupt)
	<-srv.done
}

// lldbRun: `iosmux debugserver --app --launch --lldb` runs lldb itself,
// connected to the app it launched suspended.
func lldbRun(t *testing.T, bin string, env, target []string, d *sim.Device) {
	ctx := testCtx(t, 2*time.Minute)
	s := start(t, ctx, env, bin, append([]string{"debugserver", "--app", demoApp, "--launch", "--lldb"}, target...)...)
	m := s.expect(`Process (\d+) stopped`, 60*time.Second)
	pid, _ := strconv.Atoi(m[1])
	if p, ok := d.Processes().Get(pid); !ok || p.BundleID != demoApp || p.State != sim.ProcessStopped {
		t.Fatalf("lldb stopped at pid %d; the device holds %+v", pid, p)
	}
	s.send("continue")
	s.expect(fmt.Sprintf(`Process %d resuming`, pid), 30*time.Second)
	waitState(t, d, pid, sim.ProcessRunning)
	iosmux(t, ctx, bin, env, append([]string{"processes", "kill", strconv.Itoa(pid)}, target...)...)
	s.expect(fmt.Sprintf(`Process %d exited with status = 0`, pid), 30*time.Second)
	s.send("quit")
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Errorf("iosmux debugserver --lldb did not end after lldb quit:\n%s", s.output())
	}
}
