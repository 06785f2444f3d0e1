package appservice

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/services/coredevice/coredevicetest"
	"github.com/iosmux/iosmux/xpc"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var vector = coredevicetest.Vector

func enc(t testing.TB, v xpc.Value) []byte {
	t.Helper()
	b, err := xpc.AppendValue(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRequestInputs: the inputs the client builds are those of cd01–cd05
// (pymobiledevice3's), byte for byte.
func TestRequestInputs(t *testing.T) {
	cases := []struct {
		vec string
		in  *xpc.Dict
	}{
		{"cd01_listapps_request", AllApps.input()},
		{"cd02_launchapplication_request", launchInput("com.example.demo", LaunchOptions{TerminateExisting: true})},
		{"cd03_listprocesses_request", xpc.NewDict()},
		{"cd04_sendsignal_request", xpc.NewDict("process", xpc.NewDict("processIdentifier", xpc.Int64(1234)), "signal", xpc.Int64(SIGKILL))},
		{"cd05_uninstallapp_request", xpc.NewDict("bundleIdentifier", xpc.String("com.example.demo"))},
	}
	for _, c := range cases {
		_, m := vector(t, c.vec)
		want := m.Body.Dict(coredevice.KeyInput)
		if got, w := enc(t, c.in), enc(t, want); !bytes.Equal(got, w) {
			t.Errorf("%s: input differs:\n got %x\nwant %x", c.vec, got, w)
		}
	}
	// The device reads cd02 back.
	_, m := vector(t, "cd02_launchapplication_request")
	r, err := ParseLaunchRequest(m.Body.Dict(coredevice.KeyInput))
	if err != nil || r.BundleID != "com.example.demo" || !r.TerminateExisting || r.StartStopped || !r.Stdio.IsZero() ||
		string(r.PlatformSpecificOptions) != emptyPlist {
		t.Errorf("cd02 read as %+v, %v", r, err)
	}
	// With stdio, arguments and environment.
	id := xpc.UUID{1, 2, 3}
	in := launchInput("a.b", LaunchOptions{Arguments: []string{"-x", "y"}, Environment: map[string]string{"B": "2", "A": "1"}, StartStopped: true, Stdio: id})
	r, err = ParseLaunchRequest(in)
	if err != nil || r.Stdio != id || r.Stdin != id || !r.StartStopped || !reflect.DeepEqual(r.Arguments, []string{"-x", "y"}) ||
		!reflect.DeepEqual(r.Environment, map[string]string{"A": "1", "B": "2"}) {
		t.Errorf("launch input read back as %+v, %v", r, err)
	}
	if keys := in.Dict("options").Dict("environmentVariables").Keys(); !reflect.DeepEqual(keys, []string{"A", "B"}) {
		t.Errorf("environment order %v", keys)
	}
}

var demo = App{BundleID: "com.example.demo", Name: "Demo", Version: "1.0", BundleVersion: "1",
	Path:        "/private/var/containers/Bundle/Application/3F1C5A2E-9B7D-4C61-8E0A-5D2B7C9E1F40/Demo.app",
	IsRemovable: true, IsDeveloperApp: true}

var demoToken = Process{PID: 4321, PIDVersion: 1, ExecutableURL: "file://" + demo.Path + "/Demo",
	AuditToken: []uint64{4294967295, 501, 501, 501, 501, 4321, 100017, 1}}

// TestReplyOutputs: the device role's encodings of cd11–cd15's contents are
// those replies' outputs byte for byte.
func TestReplyOutputs(t *testing.T) {
	launchd := Process{PID: 1, ExecutableURL: "file:///sbin/launchd"}
	short := Process{PID: 4321, ExecutableURL: demoToken.ExecutableURL}
	cases := []struct {
		vec string
		out xpc.Value
	}{
		{"cd11_listapps_reply", xpc.Array{demo.value()}},
		{"cd12_launchapplication_reply", xpc.NewDict("processToken", demoToken.value())},
		{"cd13_listprocesses_reply", xpc.NewDict("processTokens", xpc.Array{launchd.value(), short.value()})},
		{"cd14_sendsignal_reply", SignalResult{Process: Process{PID: 1234, ExecutableURL: demoToken.ExecutableURL},
			DeviceTimestamp: time.Unix(0, 1767323045000000000), Signal: 9}.value()},
		{"cd15_uninstallapp_reply", xpc.NewDict()},
	}
	for _, c := range cases {
		_, m := vector(t, c.vec)
		if got, w := enc(t, c.out), enc(t, m.Body.Get(coredevice.KeyOutput)); !bytes.Equal(got, w) {
			t.Errorf("%s: output differs:\n got %x\nwant %x", c.vec, got, w)
		}
	}
}

// replay answers every request with the body of a vector.
func replay(t *testing.T, name string) *Client {
	_, m := vector(t, name)
	open := coredevicetest.Device(t, func(context.Context, xpc.Message) *xpc.Dict { return m.Body })
	c := New(coredevice.NewClient(coredevice.ClientConfig{Open: open, UDID: "U"}))
	t.Cleanup(func() { c.Close() })
	return c
}

// TestClientReadsVectors: the host role reads cd11–cd16.
func TestClientReadsVectors(t *testing.T) {
	ctx := ctxT(t)
	apps, err := replay(t, "cd11_listapps_reply").ListApps(ctx, AllApps)
	if err != nil || len(apps) != 1 || apps[0] != demo {
		t.Errorf("cd11: %+v %v", apps, err)
	}
	p, err := replay(t, "cd12_launchapplication_reply").Launch(ctx, "com.example.demo", LaunchOptions{})
	if err != nil || !reflect.DeepEqual(p, demoToken) || p.Name() != "Demo" || p.Executable() != demo.Path+"/Demo" {
		t.Errorf("cd12: %+v %v", p, err)
	}
	ps, err := replay(t, "cd13_listprocesses_reply").ListProcesses(ctx)
	if err != nil || len(ps) != 2 || ps[0].PID != 1 || ps[0].Executable() != "/sbin/launchd" || ps[1].PID != 4321 {
		t.Errorf("cd13: %+v %v", ps, err)
	}
	sr, err := replay(t, "cd14_sendsignal_reply").Kill(ctx, 1234)
	if err != nil || sr.Signal != 9 || sr.Process.PID != 1234 || sr.DeviceTimestamp.UnixNano() != 1767323045000000000 {
		t.Errorf("cd14: %+v %v", sr, err)
	}
	if err := replay(t, "cd15_uninstallapp_reply").Uninstall(ctx, "com.example.demo"); err != nil {
		t.Errorf("cd15: %v", err)
	}
	_, err = replay(t, "cd16_error_reply").Launch(ctx, "com.example.missing", LaunchOptions{})
	if !errors.Is(err, coredevice.ErrNotInstalled) || !strings.Contains(err.Error(), "U: launchapplication: The application failed to launch.") {
		t.Errorf("cd16: %v", err)
	}
	if _, err := replay(t, "cd15_uninstallapp_reply").Launch(ctx, "x", LaunchOptions{}); err == nil || !strings.Contains(err.Error(), "no processToken") {
		t.Errorf("launch answered {}: %v", err)
	}
	if _, err := replay(t, "cd15_uninstallapp_reply").ListApps(ctx, AllApps); err == nil || !strings.Contains(err.Error(), "not an array") {
		t.Errorf("listapps answered {}: %v", err)
	}
}

// fakeDevice is a small app registry and process table.
type fakeDevice struct {
	mu      sync.Mutex
	apps    []App
	procs   map[int64]*fakeProc
	next    int64
	stdio   []xpc.UUID
	signals []int64
}

type fakeProc struct {
	p    Process
	exit chan ExitStatus
	st   ExitStatus
}

func newFake() *fakeDevice {
	clip := App{BundleID: "com.example.clip", Name: "Clip", Path: "/c/Clip.app", IsRemovable: true, IsAppClip: true}
	settings := App{BundleID: "com.apple.Preferences", Name: "Settings", Path: "/Applications/Preferences.app", IsFirstParty: true}
	d := &fakeDevice{apps: []App{demo, clip, settings}, procs: map[int64]*fakeProc{}, next: 100}
	d.procs[1] = &fakeProc{p: Process{PID: 1, ExecutableURL: "file:///sbin/launchd"}, exit: make(chan ExitStatus)}
	return d
}

func (d *fakeDevice) Apps() ([]App, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]App(nil), d.apps...), nil
}

func (d *fakeDevice) Launch(ctx context.Context, r LaunchRequest) (Process, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range d.apps {
		if a.BundleID == r.BundleID {
			d.next++
			p := Process{PID: d.next, PIDVersion: 1, ExecutableURL: FileURL(a.Path + "/" + a.Name), AuditToken: []uint64{1, 2, 3, 4, 5, uint64(d.next), 7, 8}}
			d.procs[p.PID] = &fakeProc{p: p, exit: make(chan ExitStatus)}
			d.stdio = append(d.stdio, r.Stdio)
			return p, nil
		}
	}
	return Process{}, NotInstalled(r.BundleID)
}

func (d *fakeDevice) Processes() ([]Process, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Process
	for _, pid := range []int64{1, 101, 102, 103} {
		if p, ok := d.procs[pid]; ok {
			out = append(out, p.p)
		}
	}
	return out, nil
}

func (d *fakeDevice) Signal(pid, sig int64) (Process, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.procs[pid]
	if !ok {
		return Process{}, NoSuchProcess(pid)
	}
	d.signals = append(d.signals, sig)
	if sig == SIGTERM || sig == SIGKILL {
		delete(d.procs, pid)
		p.st = ExitStatus{ExitCode: -sig}
		close(p.exit)
	}
	return p.p, nil
}

func (d *fakeDevice) WaitExit(ctx context.Context, pid int64) (ExitStatus, error) {
	d.mu.Lock()
	p, ok := d.procs[pid]
	d.mu.Unlock()
	if !ok {
		return ExitStatus{}, nil
	}
	select {
	case <-p.exit:
		return p.st, nil
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
}

func (d *fakeDevice) Uninstall(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, a := range d.apps {
		if a.BundleID == id {
			d.apps = append(d.apps[:i], d.apps[i+1:]...)
			break
		}
	}
	return nil
}

func pair(t *testing.T, dev Device, oneShot bool) (*Client, []string) {
	srv := NewServer(dev, nil)
	var wg sync.WaitGroup
	open := func(ctx context.Context) (*xpc.Conn, error) {
		a, b := testkit.Pipe()
		wg.Go(func() { srv.ServeConn(context.WithoutCancel(ctx), b) })
		return xpc.Client(ctx, a, nil)
	}
	c := New(coredevice.NewClient(coredevice.ClientConfig{Open: open, UDID: "U", Features: srv.Features(), OneShot: oneShot}))
	t.Cleanup(func() { c.Close(); wg.Wait() })
	return c, srv.Features()
}

// TestBothRoles: the client against the device role over in-memory RemoteXPC
// connections, reused and one per call.
func TestBothRoles(t *testing.T) {
	for _, oneShot := range []bool{false, true} {
		t.Run(map[bool]string{false: "reused", true: "oneshot"}[oneShot], func(t *testing.T) {
			testkit.CheckLeaks(t)
			ctx := ctxT(t)
			dev := newFake()
			c, features := pair(t, dev, oneShot)
			want := []string{"launchapplication", "monitorprocesstermination", "uninstallapp", "sendsignaltoprocess", "listprocesses", "listapps"}
			for i, f := range features {
				if f != coredevice.Feature(want[i]) {
					t.Errorf("features %v", features)
				}
			}

			apps, err := c.ListApps(ctx, AllApps)
			if err != nil || len(apps) != 3 {
				t.Fatalf("listapps: %v %v", apps, err)
			}
			apps, _ = c.ListApps(ctx, ListAppsOptions{Removable: true})
			if len(apps) != 1 || apps[0].BundleID != demo.BundleID {
				t.Errorf("removable only: %+v", apps)
			}
			apps, _ = c.ListApps(ctx, ListAppsOptions{Default: true})
			if len(apps) != 1 || apps[0].BundleID != "com.apple.Preferences" {
				t.Errorf("default only: %+v", apps)
			}

			stdio := xpc.UUID{9}
			p, err := c.Launch(ctx, demo.BundleID, LaunchOptions{StartStopped: true, Stdio: stdio})
			if err != nil || p.PID != 101 || len(p.AuditToken) != 8 || p.PIDVersion != 1 || p.Name() != "Demo" {
				t.Fatalf("launch: %+v %v", p, err)
			}
			if dev.stdio[0] != stdio {
				t.Errorf("stdio id %v", dev.stdio)
			}
			if _, err := c.Launch(ctx, "com.example.missing", LaunchOptions{}); !errors.Is(err, coredevice.ErrNotInstalled) {
				t.Errorf("missing app: %v", err)
			}
			ps, err := c.ListProcesses(ctx)
			if err != nil || len(ps) != 2 || ps[1].PID != 101 || ps[1].AuditToken != nil || ps[1].Executable() != demo.Path+"/Demo" {
				t.Errorf("processes: %+v %v", ps, err)
			}

			exited := make(chan ExitStatus, 1)
			go func() {
				st, err := c.WaitExit(ctx, 101)
				if err != nil {
					t.Errorf("wait: %v", err)
				}
				exited <- st
			}()
			if r, err := c.Signal(ctx, 101, SIGSTOP); err != nil || r.Signal != SIGSTOP || r.Process.PID != 101 || time.Since(r.DeviceTimestamp) > time.Minute {
				t.Errorf("SIGSTOP: %+v %v", r, err)
			}
			select {
			case st := <-exited:
				t.Fatalf("exited on SIGSTOP: %+v", st)
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Terminate(ctx, 101); err != nil {
				t.Fatal(err)
			}
			if st := <-exited; st.ExitCode != -SIGTERM {
				t.Errorf("exit status %+v", st)
			}
			if _, err := c.Kill(ctx, 101); !errors.Is(err, coredevice.ErrNoSuchProcess) || !strings.Contains(err.Error(), "No process with pid 101 is running.") {
				t.Errorf("signal to a dead pid: %v", err)
			}
			if st, err := c.WaitExit(ctx, 101); err != nil || st != (ExitStatus{}) {
				t.Errorf("wait on a dead pid: %+v %v", st, err)
			}
			if err := c.Uninstall(ctx, demo.BundleID); err != nil {
				t.Fatal(err)
			}
			if err := c.Uninstall(ctx, demo.BundleID); err != nil {
				t.Errorf("second uninstall: %v", err)
			}
			if apps, _ := c.ListApps(ctx, AllApps); len(apps) != 2 {
				t.Errorf("after uninstall: %+v", apps)
			}
		})
	}
}

// TestDeviceRoleRefusesBadInput: inputs without what a feature needs are
// CoreDeviceError 1.
func TestDeviceRoleRefusesBadInput(t *testing.T) {
	ctx := ctxT(t)
	srv := NewServer(newFake(), nil)
	for _, f := range []string{FeatureLaunch, FeatureMonitor, FeatureUninstall, FeatureSignal} {
		req := &coredevice.Request{Feature: coredevice.Feature(f), Input: xpc.NewDict("x", xpc.Int64(1))}
		_, err := coredevice.ParseReply(srv.Answer(ctx, req.Body()))
		if !errors.Is(err, coredevice.ErrInvalidRequest) {
			t.Errorf("%s with bad input: %v", f, err)
		}
	}
}

func TestSignals(t *testing.T) {
	for in, want := range map[string]int64{"TERM": 15, "sigkill": 9, "SIGSTOP": 17, "cont": 19, "30": 30, " 2 ": 2} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0", "32", "FOO", "9x"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) accepted", bad)
		}
	}
	if SignalName(17) != "SIGSTOP" || SignalName(99) != "99" {
		t.Error("SignalName")
	}
}
