package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/ipa/ipatest"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/debugproxy"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/sim/simtest"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
)

// coreRig is one simulated iPhone (Developer Mode on, a developer app
// installed) behind a userspace tunnel whose go-ios proxy listens on
// loopback: the commands reach it with --rsd and --userspace-proxy, as a
// user of start-tunnel --userspace does.
type coreRig struct {
	f      *sim.Fleet
	mux    *usbmux.Client
	dev    *sim.Device
	ro     *reach.RSD
	env    map[string]string
	target []string
}

var cliTestDDI = filepath.Join("..", "..", "services", "mounter", "ddi", "testdata", "ddi_restore")

func newCoreRig(t *testing.T) *coreRig {
	t.Helper()
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), DeveloperMode: true, SeedManifests: []string{cliTestDDI}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	d := f.Devices()[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var pkg bytes.Buffer
	ipatest.Build(&pkg, ipatest.Spec{BundleID: "com.example.demo", Name: "Demo", Developer: true})
	if _, err := d.Apps().InstallFile(ctx, bytes.NewReader(pkg.Bytes()), int64(pkg.Len()), nil); err != nil {
		t.Fatal(err)
	}
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})
	list, err := mux.ListDevices(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("usbmuxd lists %v, %v", list, err)
	}
	if _, err := lockdown.PairUsbmux(ctx, mux, list[0], lockdown.PairOptions{HostName: "cli-test"}); err != nil {
		t.Fatal(err)
	}
	tn := simtest.OpenTunnelWith(t, mux, list[0].UDID(), establish.Options{}, nil)
	ns, p := tn.Net, tn.Params
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := utun.NewPreambleForwarder(ln, ns.DialContext, nil)
	t.Cleanup(func() { px.Close() })
	rsdAddr := netip.AddrPortFrom(p.ServerAddress, p.ServerRSDPort)
	ro, err := reach.NewRSD(ctx, ns.DialContext, rsdAddr, reach.RSDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &coreRig{f: f, mux: mux, dev: d, ro: ro, env: map[string]string{"IOSMUX_STATE_DIR": t.TempDir(), "USBMUXD_SOCKET_ADDRESS": "UNIX:" + f.UsbmuxSocket()},
		target: []string{"--rsd", p.ServerAddress.String(), strconv.Itoa(int(p.ServerRSDPort)), "--userspace-proxy", px.Addr().String()}}
}

func (r *coreRig) mount(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := ddi.Open(cliTestDDI)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mounter.Mount(ctx, r.ro, mounter.MountConfig{Bundle: b, TSS: &tss.Client{URL: "http://127.0.0.1:1/never"}}); err != nil {
		t.Fatal(err)
	}
}

// run runs a command line under ctx; --json output is decoded into v.
func (r *coreRig) run(t *testing.T, ctx context.Context, v any, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := execIn(ctx, &out, &errb, r.env, r.args(args)...)
	if err == nil && v != nil {
		if jerr := json.Unmarshal(out.Bytes(), v); jerr != nil {
			t.Fatalf("iosmux %v: %v\n%s", args, jerr, out.String())
		}
	}
	return out.String(), errb.String(), err
}

// args puts the target flags before any "--".
func (r *coreRig) args(args []string) []string {
	i := slices.Index(args, "--")
	if i < 0 {
		i = len(args)
	}
	return slices.Concat(args[:i], r.target, args[i:])
}

func (r *coreRig) must(t *testing.T, v any, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, errs, err := r.run(t, ctx, v, args...)
	if err != nil {
		t.Fatalf("iosmux %s: %v\n%s%s", strings.Join(args, " "), err, out, errs)
	}
	return out
}

// TestCoreDeviceCommands: apps launch (with --json, --stopped, --console),
// processes ps|signal|kill|watch, info display and debugserver against a
// simulated iPhone through a userspace tunnel's proxy.
func TestCoreDeviceCommands(t *testing.T) {
	r := newCoreRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Before the mount the services are not there, and the error says why.
	if _, _, err := r.run(t, ctx, nil, "apps", "launch", "com.example.demo"); err == nil || !strings.Contains(err.Error(), "mount it first") {
		t.Errorf("launch before the mount: %v", err)
	}
	r.mount(t)

	var launched launchOutput
	r.must(t, &launched, "apps", "launch", "com.example.demo", "--stopped", "--env", "A=1", "--json", "--", "-x", "y")
	p, ok := r.dev.Processes().Get(int(launched.PID))
	if !ok || p.State != sim.ProcessStopped || p.BundleID != "com.example.demo" || launched.Executable != p.Path || !launched.Stopped || launched.UDID != r.dev.UDID() {
		t.Errorf("launched %+v; the device holds %+v", launched, p)
	}
	if _, _, err := r.run(t, ctx, nil, "apps", "launch", "com.example.missing"); err == nil || !strings.Contains(err.Error(), "is not installed") || !strings.Contains(err.Error(), "iosmux apps list") {
		t.Errorf("a missing app: %v", err)
	}
	if _, _, err := r.run(t, ctx, nil, "apps", "launch", "com.example.demo", "--env", "NOEQUALS"); !isUsage(err) {
		t.Errorf("--env without =: %v", err)
	}
	if _, _, err := r.run(t, ctx, nil, "apps", "launch", "a", "b"); !isUsage(err) {
		t.Errorf("two bundle ids: %v", err)
	}

	var ps []processJSON
	r.must(t, &ps, "processes", "ps", "--json")
	if len(ps) != len(r.dev.Processes().List()) {
		t.Errorf("ps lists %d, the device holds %d", len(ps), len(r.dev.Processes().List()))
	}
	if text := r.must(t, nil, "processes", "ps"); !regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+Demo\s+/private/var/containers/Bundle/Application/.*/Demo\.app/Demo$`, launched.PID)).MatchString(text) {
		t.Errorf("ps text:\n%s", text)
	}

	// Through usbmuxd, os_trace_relay's PidList: the same pids, no paths.
	var viaMux []processJSON
	var mout, merr bytes.Buffer
	if err := execIn(ctx, &mout, &merr, r.env, "processes", "ps", "--udid", r.dev.UDID(), "--json"); err != nil {
		t.Fatalf("ps through usbmuxd: %v\n%s", err, merr.String())
	}
	json.Unmarshal(mout.Bytes(), &viaMux)
	if len(viaMux) != len(ps) || viaMux[len(viaMux)-1].PID != ps[len(ps)-1].PID || viaMux[0].Executable != "" {
		t.Errorf("ps through usbmuxd %+v; through the tunnel %+v", viaMux, ps)
	}

	// By name: CONT runs it; watch waits while kill ends it.
	r.must(t, nil, "processes", "signal", "Demo", "CONT")
	if p, _ := r.dev.Processes().Get(int(launched.PID)); p.State != sim.ProcessRunning {
		t.Errorf("after CONT: %v", p.State)
	}
	watched := make(chan exitOutput, 1)
	go func() {
		var st exitOutput
		r.must(t, &st, "processes", "watch", strconv.FormatInt(launched.PID, 10), "--json")
		watched <- st
	}()
	time.Sleep(200 * time.Millisecond)
	var sent signalOutput
	r.must(t, &sent, "processes", "kill", "Demo", "--json")
	if sent.Signal != 9 || sent.SignalName != "SIGKILL" || sent.PID != launched.PID {
		t.Errorf("kill: %+v", sent)
	}
	select {
	case st := <-watched:
		if st.ExitCode != -9 || st.PID != launched.PID {
			t.Errorf("watch: %+v", st)
		}
	case <-time.After(time.Minute):
		t.Fatal("watch did not end")
	}
	if _, _, err := r.run(t, ctx, nil, "processes", "signal", "1", "FOO"); !isUsage(err) {
		t.Errorf("bad signal: %v", err)
	}
	if _, _, err := r.run(t, ctx, nil, "processes", "kill", "NoSuchName"); err == nil || !strings.Contains(err.Error(), `no process named "NoSuchName"`) {
		t.Errorf("kill by an unknown name: %v", err)
	}
	if _, _, err := r.run(t, ctx, nil, "processes", "kill", strconv.FormatInt(launched.PID, 10)); err == nil || !strings.Contains(err.Error(), "No such process") {
		t.Errorf("kill of an ended pid: %v", err)
	}

	// The console: the app's line on stdout; the command ends with the app.
	var out, errb testkit.Buffer
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, &out, &errb, r.env, r.args([]string{"apps", "launch", "com.example.demo", "--console"})...)
	}()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), "hello from com.example.demo\n") {
		if time.Now().After(deadline) {
			t.Fatalf("console output %q, stderr %q", out.String(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, q := range r.dev.Processes().Find("com.example.demo") {
		r.dev.Processes().Signal(q.PID, sim.SIGTERM)
	}
	if err := <-done; err != nil || !strings.Contains(errb.String(), "its console follows") {
		t.Errorf("console: %v, stderr %q", err, errb.String())
	}

	// info display, here and through a tunnel the command opens itself.
	var ds []map[string]any
	r.must(t, &ds, "info", "display", "--json")
	var own bytes.Buffer
	if err := execIn(ctx, &own, io.Discard, r.env, "info", "display", "--udid", r.dev.UDID(), "--open-tunnel", "--json"); err != nil ||
		!strings.Contains(own.String(), `"displayId": 1`) {
		t.Errorf("info display --open-tunnel: %v %s", err, own.String())
	}
	if len(ds) != 1 || ds[0]["displayId"] != float64(1) || ds[0]["width"] != float64(1290) || ds[0]["primary"] != true {
		t.Errorf("displays %v", ds)
	}

	// debugserver: --launch starts the app suspended; the forwarder's port
	// reaches the simulated debugserver; --json names it.
	dctx, dcancel := context.WithCancel(ctx)
	var dout, derr testkit.Buffer
	ddone := make(chan error, 1)
	go func() {
		ddone <- execIn(dctx, &dout, &derr, r.env, r.args([]string{"debugserver", "--app", "com.example.demo", "--launch", "--json"})...)
	}()
	var ds2 debugserverOutput
	deadline = time.Now().Add(time.Minute)
	for json.Unmarshal([]byte(dout.String()), &ds2) != nil {
		select {
		case err := <-ddone:
			t.Fatalf("debugserver ended: %v\n%s%s", err, dout.String(), derr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("debugserver printed %q, %q", dout.String(), derr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if q, _ := r.dev.Processes().Get(int(ds2.PID)); q.State != sim.ProcessStopped || !strings.HasSuffix(ds2.DevicePath, "/Demo.app") ||
		ds2.Commands[len(ds2.Commands)-1] != fmt.Sprintf("process attach --pid %d", ds2.PID) || !strings.HasPrefix(ds2.Listen, "127.0.0.1:") {
		t.Errorf("debugserver %+v; the device holds %+v", ds2, q)
	}
	nc, err := net.Dial("tcp", ds2.Listen)
	if err != nil {
		t.Fatal(err)
	}
	c := debugproxy.NewConn(nc)
	c.Timeout = 10 * time.Second
	if got, err := c.Call(fmt.Sprintf("vAttach;%x", ds2.PID)); err != nil || got != fmt.Sprintf("T11thread:%x;", ds2.PID) {
		t.Errorf("attach through the forwarder: %q %v", got, err)
	}
	nc.Close()
	dcancel()
	if err := <-ddone; err != nil {
		t.Errorf("debugserver after an interrupt: %v", err)
	}
	// Through iosmux's backend (an RSD forwarding every service it lists,
	// the raw debugproxy included): launch stopped, expose, attach.
	ba := serveBackend(t, &devRig{f: r.f, dev: r.dev, mux: r.mux})
	via := []string{"--rsd", ba.Addr().String(), strconv.Itoa(int(ba.Port()))}
	var bl launchOutput
	var bout bytes.Buffer
	if err := execIn(ctx, &bout, io.Discard, r.env, slices.Concat([]string{"apps", "launch", "com.example.demo", "--stopped", "--json"}, via)...); err != nil {
		t.Fatalf("launch through the backend: %v", err)
	}
	json.Unmarshal(bout.Bytes(), &bl)
	bctx, bcancel := context.WithCancel(ctx)
	var bdout testkit.Buffer
	bdone := make(chan error, 1)
	go func() {
		bdone <- execIn(bctx, &bdout, io.Discard, r.env, slices.Concat([]string{"debugserver", "--attach", strconv.FormatInt(bl.PID, 10), "--json"}, via)...)
	}()
	var bds debugserverOutput
	deadline = time.Now().Add(time.Minute)
	for json.Unmarshal([]byte(bdout.String()), &bds) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("debugserver through the backend printed %q", bdout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	bnc, err := net.Dial("tcp", bds.Listen)
	if err != nil {
		t.Fatal(err)
	}
	bc := debugproxy.NewConn(bnc)
	bc.Timeout = 10 * time.Second
	if got, err := bc.Call(fmt.Sprintf("vAttach;%x", bl.PID)); err != nil || got != fmt.Sprintf("T11thread:%x;", bl.PID) {
		t.Errorf("attach through the backend: %q %v", got, err)
	}
	bnc.Close()
	bcancel()
	<-bdone

	for _, bad := range [][]string{
		{"debugserver", "--lldb"},
		{"debugserver", "--launch"},
		{"debugserver", "--app", "x", "--launch", "--attach", "1"},
		{"debugserver", "--attach", "1", "--lldb", "--json"},
		{"apps", "launch", "x", "--console", "--json"},
	} {
		if _, _, err := r.run(t, ctx, nil, bad...); !isUsage(err) {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
}
