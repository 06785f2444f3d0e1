package sim

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/ipa/ipatest"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/services/coredevice/appservice"
	"github.com/iosmux/iosmux/services/coredevice/deviceinfo"
	"github.com/iosmux/iosmux/services/coredevice/openstdio"
	"github.com/iosmux/iosmux/services/debugproxy"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
)

// mountedDevice is a paired device with Developer Mode on, a developer app
// installed and the DDI mounted (offline: a seeded manifest), and an opener
// of its trusted RSD through a tunnel, read after the mount.
func mountedDevice(t *testing.T) (*rig, *Device, *reach.RSD) {
	t.Helper()
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("18.2"), DeveloperMode: true, SeedManifests: []string{testDDI}})
	ctx := testCtx(t)
	if _, err := r.pairLockdown(t, d); err != nil {
		t.Fatal(err)
	}
	var pkg bytes.Buffer
	if err := ipatest.Build(&pkg, ipatest.Spec{BundleID: "com.example.demo", Name: "Demo", Version: "7", ShortVersion: "1.2", Developer: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apps().InstallFile(ctx, bytes.NewReader(pkg.Bytes()), int64(pkg.Len()), nil); err != nil {
		t.Fatal(err)
	}
	ro := r.rsdOpener(t, ctx, d)
	for _, s := range []reach.Names{reach.AppService, reach.DeviceInfo, reach.OpenStdioSocket, reach.DebugProxy} {
		if listed(ro, s.RSD) {
			t.Errorf("%s listed before the DDI is mounted", s.RSD)
		}
	}
	b, err := ddi.Open(testDDI)
	if err != nil {
		t.Fatal(err)
	}
	res, err := mounter.Mount(ctx, ro, mounter.MountConfig{Bundle: b, TSS: &tss.Client{URL: "http://127.0.0.1:1/never"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []reach.Names{reach.AppService, reach.DeviceInfo, reach.OpenStdioSocket, reach.DebugProxy} {
		if !slices.Contains(res.Services, s.RSD) || !listed(ro, s.RSD) {
			t.Errorf("%s not listed after the mount (mount reported %v)", s.RSD, res.Services)
		}
	}
	return r, d, ro
}

// TestCoreDeviceServices: the appservice and deviceinfo host roles against
// the simulated iPhone through a tunnel: what they read is what the device
// holds; launches, signals and the console act on its process table.
func TestCoreDeviceServices(t *testing.T) {
	testkit.CheckLeaks(t)
	_, d, ro := mountedDevice(t)
	ctx := testCtx(t)

	e, _ := ro.Lookup(reach.AppService)
	wantFeatures := []string{"launchapplication", "monitorprocesstermination", "uninstallapp", "sendsignaltoprocess", "listprocesses", "listapps"}
	for i, f := range e.Features() {
		if f != coredevice.Feature(wantFeatures[i]) {
			t.Errorf("appservice features %v", e.Features())
			break
		}
	}
	svc, err := appservice.Dial(ro, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	apps, err := svc.ListApps(ctx, appservice.AllApps)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != len(d.Apps().Records()) {
		t.Errorf("%d apps listed, the registry holds %d", len(apps), len(d.Apps().Records()))
	}
	var demo appservice.App
	for _, a := range apps {
		if a.BundleID == "com.example.demo" {
			demo = a
		}
	}
	rec, _ := d.Apps().Lookup("com.example.demo")
	if demo.Name != "Demo" || demo.Version != "1.2" || demo.BundleVersion != "7" || !demo.IsRemovable || !demo.IsDeveloperApp ||
		demo.Path != rec.App().Path() {
		t.Errorf("demo listed as %+v", demo)
	}
	if only, _ := svc.ListApps(ctx, appservice.ListAppsOptions{Default: true}); slices.ContainsFunc(only, func(a appservice.App) bool { return a.IsRemovable }) {
		t.Errorf("default apps only: %+v", only)
	}

	// Launch with the console: the app's line arrives, the process is in
	// the table.
	stdio, err := openstdio.Open(ctx, ro)
	if err != nil {
		t.Fatal(err)
	}
	defer stdio.Close()
	p, err := svc.Launch(ctx, "com.example.demo", appservice.LaunchOptions{Stdio: stdio.ID, Arguments: []string{"-x"}})
	if err != nil {
		t.Fatal(err)
	}
	stdio.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(stdio).ReadString('\n')
	if err != nil || line != "hello from com.example.demo\n" {
		t.Errorf("console: %q %v", line, err)
	}
	sp, ok := d.Processes().Get(int(p.PID))
	if !ok || sp.BundleID != "com.example.demo" || sp.State != ProcessRunning || p.Executable() != sp.Path ||
		!strings.HasSuffix(sp.Path, "/Demo.app/Demo") || len(p.AuditToken) != 8 || p.AuditToken[5] != uint64(p.PID) {
		t.Errorf("launched %+v; the table holds %+v", p, sp)
	}
	ps, err := svc.ListProcesses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	table := d.Processes().List()
	if len(ps) != len(table) {
		t.Errorf("%d processes listed, the table holds %d", len(ps), len(table))
	}
	for i := range min(len(ps), len(table)) {
		if ps[i].PID != int64(table[i].PID) || ps[i].Executable() != table[i].Path {
			t.Errorf("process %d listed as %+v, table %+v", i, ps[i], table[i])
		}
	}

	// A second launch without terminate-existing returns the same process;
	// with it, a new one.
	same, err := svc.Launch(ctx, "com.example.demo", appservice.LaunchOptions{})
	if err != nil || same.PID != p.PID || same.PIDVersion != p.PIDVersion {
		t.Errorf("relaunch without terminate: %+v %v", same, err)
	}
	fresh, err := svc.Launch(ctx, "com.example.demo", appservice.LaunchOptions{TerminateExisting: true})
	if err != nil || fresh.PID == p.PID {
		t.Fatalf("relaunch with terminate: %+v %v", fresh, err)
	}
	if sp, _ := d.Processes().Get(int(p.PID)); sp.State != ProcessExited || sp.Signal != SIGKILL {
		t.Errorf("the old instance: %+v", sp)
	}
	// Its console closed with it.
	stdio.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(stdio); err != nil {
		t.Errorf("console after the process ended: %v", err)
	}

	// Signals: STOP stops, CONT continues, TERM ends; the monitor reports
	// the end; a dead pid is refused.
	exited := make(chan appservice.ExitStatus, 1)
	go func() {
		st, err := svc.WaitExit(ctx, fresh.PID)
		if err != nil {
			t.Errorf("monitor: %v", err)
		}
		exited <- st
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := svc.Signal(ctx, fresh.PID, appservice.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if sp, _ := d.Processes().Get(int(fresh.PID)); sp.State != ProcessStopped {
		t.Errorf("after SIGSTOP: %v", sp.State)
	}
	select {
	case st := <-exited:
		t.Fatalf("the monitor answered on a stop: %+v", st)
	case <-time.After(50 * time.Millisecond):
	}
	svc.Signal(ctx, fresh.PID, appservice.SIGCONT)
	res, err := svc.Terminate(ctx, fresh.PID)
	if err != nil || res.Process.PID != fresh.PID || res.Signal != appservice.SIGTERM || res.Process.Executable() != fresh.Executable() {
		t.Errorf("SIGTERM: %+v %v", res, err)
	}
	if st := <-exited; st.ExitCode != -15 {
		t.Errorf("exit status %+v", st)
	}
	if st, err := svc.WaitExit(ctx, fresh.PID); err != nil || st.ExitCode != -15 {
		t.Errorf("monitor of an ended pid: %+v %v", st, err)
	}
	if _, err := svc.Kill(ctx, fresh.PID); !errors.Is(err, coredevice.ErrNoSuchProcess) {
		t.Errorf("signal to an ended pid: %v", err)
	}
	if _, err := svc.Launch(ctx, "com.example.missing", appservice.LaunchOptions{}); !errors.Is(err, coredevice.ErrNotInstalled) {
		t.Errorf("missing app: %v", err)
	}
	if err := svc.Uninstall(ctx, "com.example.demo"); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Apps().Lookup("com.example.demo"); ok {
		t.Error("still installed after uninstallapp")
	}

	// deviceinfo.
	info, err := deviceinfo.Dial(ro, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer info.Close()
	ds, err := info.Displays(ctx)
	if err != nil || len(ds) != 1 || ds[0] != builtInDisplay {
		t.Errorf("displays %+v %v", ds, err)
	}
	di, err := info.DeviceInfo(ctx)
	props := ro.Handshake().Properties
	if err != nil || di.String("UniqueDeviceID") != d.UDID() || di.String("ProductType") != props.String("ProductType") ||
		di.String("BootSessionUUID") != props.String("BootSessionUUID") {
		t.Errorf("device info %v %v", di, err)
	}
	if _, err := info.LockState(ctx); !errors.Is(err, coredevice.ErrNotImplemented) {
		t.Errorf("lock state: %v", err)
	}
}

// TestDebugserver: a process launched stopped stays stopped until the
// simulated debugserver continues it; SIGTERM then ends it and the
// debugger sees the exit; a debugger that leaves detaches.
func TestDebugserver(t *testing.T) {
	_, d, ro := mountedDevice(t)
	ctx := testCtx(t)
	svc, err := appservice.Dial(ro, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	p, err := svc.Launch(ctx, "com.example.demo", appservice.LaunchOptions{StartStopped: true})
	if err != nil {
		t.Fatal(err)
	}
	if sp, _ := d.Processes().Get(int(p.PID)); sp.State != ProcessStopped {
		t.Fatalf("launched stopped: %v", sp.State)
	}
	nc, err := ro.Open(ctx, reach.DebugProxy)
	if err != nil {
		t.Fatal(err)
	}
	c := debugproxy.NewConn(nc)
	c.Timeout = 10 * time.Second
	call := func(pkt, want string) {
		t.Helper()
		got, err := c.Call(pkt)
		if err != nil || got != want {
			t.Fatalf("%s → %q %v, want %q", pkt, got, err, want)
		}
	}
	call("QStartNoAckMode", "OK")
	c.NoAck()
	call("vAttach;"+hexPID(p.PID), "T11thread:"+hexPID(p.PID)+";")
	call("qProcessInfo", "pid:"+hexPID(p.PID)+";parent-pid:1;real-uid:1f5;real-gid:1f5;effective-uid:1f5;effective-gid:1f5;cputype:100000c;cpusubtype:2;ptrsize:8;ostype:ios;vendor:apple;endian:little;")
	if err := c.Write([]byte("c")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if sp, _ := d.Processes().Get(int(p.PID)); sp.State == ProcessRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process never ran after continue")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := svc.Terminate(ctx, p.PID); err != nil {
		t.Fatal(err)
	}
	pk, err := c.Read()
	if err != nil || string(pk.Data) != "W00" {
		t.Fatalf("after SIGTERM the debugger read %q %v", pk.Data, err)
	}
	nc.Close()

	// Attach to a running process and leave: it runs on.
	q, err := svc.Launch(ctx, "com.apple.Preferences", appservice.LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nc, _ = ro.Open(ctx, reach.DebugProxy)
	c = debugproxy.NewConn(nc)
	c.Timeout = 10 * time.Second
	call("vAttach;"+hexPID(q.PID), "T11thread:"+hexPID(q.PID)+";")
	if sp, _ := d.Processes().Get(int(q.PID)); sp.State != ProcessStopped {
		t.Errorf("attached: %v", sp.State)
	}
	nc.Close()
	deadline = time.Now().Add(10 * time.Second)
	for {
		if sp, _ := d.Processes().Get(int(q.PID)); sp.State == ProcessRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process stayed stopped after the debugger left")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hexPID(n int64) string { return strconv.FormatInt(n, 16) }
