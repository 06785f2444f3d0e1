package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/dylib"
	"github.com/iosmux/iosmux/dylib/dylibtest"
	"github.com/iosmux/iosmux/mercury"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

var testCDSBuild = dylib.Build{CoreDevice: "11111111-2222-3333-4444-555555555555", CoreDeviceUtilities: "66666666-7777-8888-9999-AAAAAAAAAAAA",
	Mercury: "BBBBBBBB-CCCC-DDDD-EEEE-FFFFFFFFFFFF"}

// TestBackendCDSBridge is issue 19's acceptance end to end: a fake dylib
// (the dylib's side of the socket, byte for byte) against `iosmux backend
// --simulate --cds-bridge`, every change made with iosmux's own commands.
// HELLO → DEVICE_ATTACH with the device's real properties (as 'iosmux info'
// reads them through usbmuxd) and name; Pair on the paired device → a
// reply Apple's decoder rules accept, with the device's values; Developer
// Mode enabled ('iosmux amfi enable', a reboot) → re-attached with its flag;
// a DDI mounted through the backend ('iosmux mounter auto-mount --rsd',
// the simulator's TSS stand-in) → DEVICE_UPDATE listing the DDI service,
// and Pair reports DDI services available; the socket closed mid-request
// and iosmux's answer lost → the dylib passes through, and iosmux comes
// back; the device forgets the host ('iosmux lockdown unpair') → Pair
// passes through.
func TestBackendCDSBridge(t *testing.T) {
	state := t.TempDir()
	fake, err := dylibtest.Listen(dylibtest.Config{Dir: t.TempDir(), Hello: dylib.Hello{Arch: "x86_64", DylibVersion: "fake", Build: testCDSBuild},
		Server: dylib.ServerConfig{Wait: 700 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	relay := newFrameRelay(t, fake.Path())

	out := &lockedBuffer{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, out, io.Discard, nil, "backend", "--simulate", "--simulate-profile", "18.2", "--listen", "127.0.0.1:0",
			"--state-dir", state, "--cds-bridge", "--cds-socket", relay.path, "--cds-build", testCDSBuild.ID(), "--json")
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("backend: %v", err)
		}
	}()
	select {
	case <-out.ready:
	case err := <-done:
		t.Fatalf("backend exited early: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no endpoints printed")
	}
	var e backendOut
	out.mu.Lock()
	err = json.NewDecoder(bytes.NewReader(out.buf.Bytes())).Decode(&e)
	out.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if e.CDSSocket != relay.path || e.TSS == "" {
		t.Fatalf("endpoints %+v", e)
	}
	env := map[string]string{"USBMUXD_SOCKET_ADDRESS": "UNIX:" + filepath.Join(state, "backend-sim", "usbmuxd"), "IOSMUX_STATE_DIR": state,
		"XDG_CACHE_HOME": t.TempDir()}
	run := func(v any, args ...string) {
		t.Helper()
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer rcancel()
		var o, eb bytes.Buffer
		if err := execIn(rctx, &o, &eb, env, args...); err != nil {
			t.Fatalf("iosmux %v: %v\n%s%s", args, err, o.String(), eb.String())
		}
		if v != nil {
			if err := json.Unmarshal(o.Bytes(), v); err != nil {
				t.Fatalf("iosmux %v: %v\n%s", args, err, o.String())
			}
		}
	}
	rsdHost, rsdPort, _ := net.SplitHostPort(e.RSD)

	// HELLO → DEVICE_ATTACH with what the device says of itself.
	tctx, tcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer tcancel()
	srv, err := fake.WaitConnected(tctx)
	if err != nil {
		t.Fatal(err)
	}
	dev := waitFakeDevice(t, fake, func(dylib.RemoteDevice) bool { return true })
	var info map[string]any
	run(&info, "info", "--udid", e.UDID, "--json")
	p := dev.Properties
	for prop, key := range map[string]string{"UniqueDeviceID": "UniqueDeviceID", "ProductType": "ProductType", "SerialNumber": "SerialNumber",
		"OSVersion": "ProductVersion", "BuildVersion": "BuildVersion", "HardwarePlatform": "HardwarePlatform"} {
		if got, want := p.String(prop), info[key]; got == "" || got != want {
			t.Errorf("DEVICE_ATTACH %s = %q, lockdown's %s = %v", prop, got, key, want)
		}
	}
	if ecid, _ := info["UniqueChipID"].(float64); p.Int64("UniqueChipID") == 0 || float64(p.Int64("UniqueChipID")) != ecid {
		t.Errorf("UniqueChipID %d, lockdown's %v", p.Int64("UniqueChipID"), info["UniqueChipID"])
	}
	if dev.Name == nil || *dev.Name != info["DeviceName"] {
		t.Errorf("name %v, lockdown's DeviceName %v", dev.Name, info["DeviceName"])
	}
	h := readBackendHandshake(t, e.RSD)
	if lock, ok := h.Service("com.apple.mobile.lockdown.remote.trusted"); !ok ||
		p.Dict("Services").Dict(lock.Name).String("Port") != strconv.Itoa(int(lock.Port)) {
		t.Errorf("Services %v do not point at the backend's forwarders", p.Dict("Services").Keys())
	}
	if dev.OSState != dylib.OSStateConnected || dev.ServiceIdentifier.Dict("uuid").UUID("identifier") != dev.UUID {
		t.Errorf("osState %d, serviceIdentifier %v", dev.OSState, dev.ServiceIdentifier)
	}

	// Pair on the paired device: the device's values, Developer Mode off
	// and no DDI (only the extended-info flag).
	pair := dylibtest.PairRequest(dev.UUID)
	d := pairInfo(t, fake, pair)
	for k, want := range map[string]xpc.Value{
		"identifier": dev.UUID, "pairingState": xpc.String("paired"), "state": xpc.String("connected"),
		"udid": xpc.String(e.UDID), "productType": p.Get("ProductType"), "osVersion": p.Get("OSVersion"), "osBuild": p.Get("BuildVersion"),
		"serialNumber": p.Get("SerialNumber"), "hardwareModel": p.Get("HardwarePlatform"), "ecid": xpc.Uint64(p.Int64("UniqueChipID")),
		"name": xpc.String(*dev.Name), "reality": xpc.String("physical"),
		"areDeveloperDiskImageServicesAvailable": xpc.Bool(false), "preparednessState": xpc.Int64(mercury.PreparedExtendedDeviceInfoLoaded),
	} {
		if !mercury.SameValue(d.Get(k), want) {
			t.Errorf("deviceInfo.%s = %#v, want %#v", k, d.Get(k), want)
		}
	}

	// Developer Mode on: the device reboots, the backend follows it, the
	// dylib is told again (same CoreDevice UUID).
	var am struct{ DeveloperMode bool }
	run(&am, "amfi", "enable", "--udid", e.UDID, "--json")
	if !am.DeveloperMode {
		t.Fatal("amfi enable did not turn Developer Mode on")
	}
	waitPair(t, fake, pair, "Developer Mode's flag", func(d *xpc.Dict) bool {
		return d.Int64("preparednessState") == mercury.PreparedExtendedDeviceInfoLoaded|mercury.PreparedDeveloperModeEnabledIfNeeded
	})

	// The DDI, mounted through the backend.
	var mres struct{ Manifest string }
	run(&mres, "mounter", "auto-mount", "--rsd", rsdHost, rsdPort, "--ddi", testDDI, "--tss-url", e.TSS, "--json")
	if mres.Manifest != "tss" {
		t.Errorf("auto-mount took the %q branch", mres.Manifest)
	}
	upd := waitFakeDevice(t, fake, func(d dylib.RemoteDevice) bool {
		return d.Properties.Dict("Services").Dict("com.apple.coredevice.openstdiosocket") != nil
	})
	if upd.UUID != dev.UUID {
		t.Errorf("DDI services offered for %v, the device is %v", upd.UUID, dev.UUID)
	}
	if !fakeSawUpdate(fake, dev.UUID) {
		t.Error("no DEVICE_UPDATE")
	}
	var list struct{ Mounted bool }
	run(&list, "mounter", "list", "--rsd", rsdHost, rsdPort, "--json")
	d = waitPair(t, fake, pair, "DDI services available", func(d *xpc.Dict) bool {
		return d.Bool("areDeveloperDiskImageServicesAvailable")
	})
	if !list.Mounted || d.Int64("preparednessState") != mercury.PreparedExtendedDeviceInfoLoaded|mercury.PreparedDeveloperModeEnabledIfNeeded|mercury.PreparedDeveloperDiskImageServices {
		t.Errorf("mounter lists mounted=%v; preparedness %d", list.Mounted, d.Int64("preparednessState"))
	}

	// The socket closed while a request is in flight: the dylib passes
	// through at once; iosmux reconnects.
	relay.set(relayCloseOnRequest)
	start := time.Now()
	if o := fake.Invoke(tctx, pair); o.Handled || !strings.Contains(o.Why, "passthrough") {
		t.Fatalf("socket closed mid-request: %+v", o)
	}
	if el := time.Since(start); el > 650*time.Millisecond {
		t.Errorf("passthrough after %v: the close was not seen", el)
	}
	relay.set(relayPass)
	if srv, err = fake.WaitConnected(tctx); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "re-attach", func() bool { return srv.Attached(dev.UUID) })
	// iosmux's answer lost: the dylib's wait runs out, passthrough.
	relay.set(relayDropResponses)
	if o := fake.Invoke(tctx, pair); o.Handled || !strings.Contains(o.Why, "no answer within") {
		t.Fatalf("answer lost: %+v", o)
	}
	relay.set(relayPass)
	pairInfo(t, fake, pair)

	// The device forgets this host: Pair is no longer answered.
	run(nil, "lockdown", "unpair", "--udid", e.UDID)
	waitCond(t, "Pair passed through", func() bool { return !fake.Invoke(tctx, pair).Handled })
}

// pairInfo sends req through the fake dylib, checks the reply against
// the decoder's rules and the echoed envelope, and returns its DeviceInfo.
func pairInfo(t *testing.T, fake *dylibtest.Fake, req *xpc.Dict) *xpc.Dict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := fake.Invoke(ctx, req)
	if !o.Handled {
		t.Fatalf("Pair passed through: %s", o.Why)
	}
	if err := mercury.ValidateReply(req, o.Reply, mercury.DeviceConnectionChangeResultType); err != nil {
		t.Fatalf("reply does not validate: %v", err)
	}
	for _, k := range []string{mercury.KeyActionIdentifier, mercury.KeyInvocationIdentifier, mercury.KeyDeviceIdentifier, mercury.KeyCoreDeviceVersion} {
		if !mercury.SameValue(o.Reply.Get(k), req.Get(k)) {
			t.Errorf("%s not echoed: %v", k, o.Reply.Get(k))
		}
	}
	out := o.Reply.Dict(mercury.KeyOutput)
	if out.Dict("outcome").Dict("success") == nil || out.Dict("updatedSnapshot").Dict("state").Dict("connected") == nil {
		t.Errorf("outcome %v, snapshot state %v", out.Get("outcome"), out.Dict("updatedSnapshot").Get("state"))
	}
	return out.Dict("updatedSnapshot").Dict("deviceInfo")
}

// waitPair repeats Pair until its DeviceInfo satisfies ok.
func waitPair(t *testing.T, fake *dylibtest.Fake, req *xpc.Dict, what string, ok func(*xpc.Dict) bool) *xpc.Dict {
	t.Helper()
	var d *xpc.Dict
	waitCond(t, what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o := fake.Invoke(ctx, req)
		if !o.Handled {
			return false
		}
		d = o.Reply.Dict(mercury.KeyOutput).Dict("updatedSnapshot").Dict("deviceInfo")
		return ok(d)
	})
	return pairInfo(t, fake, req)
}

// waitFakeDevice waits until the fake dylib holds an attached device that
// satisfies ok, and returns it as last pushed.
func waitFakeDevice(t *testing.T, fake *dylibtest.Fake, ok func(dylib.RemoteDevice) bool) dylib.RemoteDevice {
	t.Helper()
	var got dylib.RemoteDevice
	waitCond(t, "a matching DEVICE_ATTACH/UPDATE", func() bool {
		s := fake.Server()
		if s == nil {
			return false
		}
		for _, fr := range fake.Frames() {
			if fr.Kind != dylib.KindDeviceAttach && fr.Kind != dylib.KindDeviceUpdate {
				continue
			}
			if d, err := dylib.ParseDevice(fr.Kind, fr.Payload); err == nil && s.Attached(d.UUID) {
				if cur, ok2 := s.Device(d.UUID); ok2 && ok(cur) {
					got = cur
					return true
				}
			}
		}
		return false
	})
	return got
}

// fakeSawUpdate reports whether iosmux sent DEVICE_UPDATE for u.
func fakeSawUpdate(fake *dylibtest.Fake, u xpc.UUID) bool {
	for _, fr := range fake.Frames() {
		if fr.Kind == dylib.KindDeviceUpdate {
			if d, err := dylib.ParseDevice(fr.Kind, fr.Payload); err == nil && d.UUID == u {
				return true
			}
		}
	}
	return false
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func readBackendHandshake(t *testing.T, addr string) *rsd.Handshake {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rsd.NewClient(ctx, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return c.Handshake
}

// frameRelay sits between iosmux and the fake dylib's socket (iosmux is
// pointed at the relay), passing frames through, or losing the
// connection the way a crash or a killed CoreDeviceService would.
type frameRelay struct {
	path, target string
	mode         atomic.Int32 // a relayMode
}

type relayMode int

const (
	relayPass relayMode = iota
	// relayCloseOnRequest forwards the dylib's next ACTION_REQUEST to
	// iosmux and closes both sides before any answer crosses.
	relayCloseOnRequest
	// relayDropResponses forwards requests and loses iosmux's answers.
	relayDropResponses
)

func newFrameRelay(t *testing.T, target string) *frameRelay {
	t.Helper()
	r := &frameRelay{path: filepath.Join(t.TempDir(), "relay.sock"), target: target}
	ln, err := net.Listen("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nd, err := net.Dial("unix", target)
			if err != nil {
				nc.Close()
				continue
			}
			c, d := dylib.NewConn(nc), dylib.NewConn(nd)
			var lost sync.Once
			var dropping atomic.Bool
			closeBoth := func() { lost.Do(func() { c.Close(); d.Close() }) }
			// dylib → iosmux
			go func() {
				defer closeBoth()
				for {
					f, err := d.ReadFrame()
					if err != nil {
						return
					}
					if f.Kind == dylib.KindActionRequest && r.get() == relayCloseOnRequest {
						dropping.Store(true)
						c.WriteFrame(f, time.Second)
						return
					}
					if err := c.WriteFrame(f, time.Second); err != nil {
						return
					}
				}
			}()
			// iosmux → dylib
			go func() {
				defer closeBoth()
				for {
					f, err := c.ReadFrame()
					if err != nil {
						return
					}
					if dropping.Load() || (f.Kind == dylib.KindActionResponse && r.get() == relayDropResponses) {
						continue
					}
					if err := d.WriteFrame(f, time.Second); err != nil {
						return
					}
				}
			}()
		}
	}()
	return r
}

func (r *frameRelay) set(m relayMode) { r.mode.Store(int32(m)) }
func (r *frameRelay) get() relayMode  { return relayMode(r.mode.Load()) }

// TestTunneldCDSBridge: both places the bridge runs. `tunneld --simulate 2
// --advertise backend --cds-bridge` (the Mac holds the iPhones) offers
// both devices to one dylib, each answered with its own facts. A second
// `iosmux backend --tunnel UDID --cds-bridge` following that tunneld (the
// macOS VM when the iPhone stays on the Linux host: its --rsd/--tunnel is
// the host's backend) offers the device to its own dylib with the same
// properties and name, its services at its own forwarders, and answers
// Pair through the two hops.
func TestTunneldCDSBridge(t *testing.T) {
	state := t.TempDir()
	fakeA, err := dylibtest.Listen(dylibtest.Config{Dir: t.TempDir(), Hello: dylib.Hello{Build: testCDSBuild}})
	if err != nil {
		t.Fatal(err)
	}
	defer fakeA.Close()
	fakeB, err := dylibtest.Listen(dylibtest.Config{Dir: t.TempDir(), Hello: dylib.Hello{Build: dylib.Build{CoreDevice: "x", CoreDeviceUtilities: "y", Mercury: "z"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fakeB.Close()

	out := &lockedBuffer{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, out, io.Discard, nil, "tunneld", "--simulate", "2", "--userspace", "--advertise", "backend", "--port", "0",
			"--simulate-state", state+"/sim", "--state-dir", state,
			"--cds-bridge", "--cds-socket", fakeA.Path(), "--cds-build", testCDSBuild.ID())
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tunneld: %v", err)
		}
	}()
	tctx, tcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer tcancel()
	srv, err := fakeA.WaitConnected(tctx)
	if err != nil {
		t.Fatal(err)
	}
	var devs []dylib.RemoteDevice
	waitCond(t, "two devices attached", func() bool {
		devs = devs[:0]
		seen := map[xpc.UUID]bool{}
		for _, fr := range fakeA.Frames() {
			if d, err := dylib.ParseDevice(fr.Kind, fr.Payload); err == nil && fr.Kind == dylib.KindDeviceAttach && !seen[d.UUID] && srv.Attached(d.UUID) {
				seen[d.UUID] = true
				cur, _ := srv.Device(d.UUID)
				devs = append(devs, cur)
			}
		}
		return len(devs) == 2
	})
	for _, d := range devs {
		if info := pairInfo(t, fakeA, dylibtest.PairRequest(d.UUID)); info.String("udid") != d.Properties.String("UniqueDeviceID") || info.String("udid") == "" {
			t.Errorf("device %v answered as %q", d.UUID, info.String("udid"))
		}
	}
	if devs[0].Properties.String("UniqueDeviceID") == devs[1].Properties.String("UniqueDeviceID") {
		t.Fatal("the same device twice")
	}
	text := func() string {
		out.mu.Lock()
		defer out.mu.Unlock()
		return out.buf.String()
	}
	m := regexp.MustCompile(`pymobiledevice3 tunneld API: http://(\S+)/`).FindStringSubmatch(text())
	if m == nil {
		t.Fatalf("no API address in:\n%s", text())
	}

	// The chained backend (what runs in the VM), with its own dylib.
	want := devs[0]
	udid := want.Properties.String("UniqueDeviceID")
	bout := &lockedBuffer{ready: make(chan struct{})}
	bdone := make(chan error, 1)
	go func() {
		bdone <- execIn(ctx, bout, io.Discard, nil, "backend", "--tunnel", udid, "--tunneld", m[1], "--listen", "127.0.0.1:0",
			"--state-dir", t.TempDir(), "--cds-bridge", "--cds-socket", fakeB.Path(), "--accept-unknown-builds", "--json")
	}()
	defer func() {
		cancel()
		if err := <-bdone; err != nil {
			t.Errorf("backend: %v", err)
		}
	}()
	if _, err := fakeB.WaitConnected(tctx); err != nil {
		t.Fatal(err)
	}
	got := waitFakeDevice(t, fakeB, func(dylib.RemoteDevice) bool { return true })
	for _, k := range []string{"UniqueDeviceID", "ProductType", "OSVersion", "BuildVersion", "SerialNumber", "UniqueChipID"} {
		if !mercury.SameValue(got.Properties.Get(k), want.Properties.Get(k)) {
			t.Errorf("chained %s = %v, tunneld's backend says %v", k, got.Properties.Get(k), want.Properties.Get(k))
		}
	}
	if got.Name == nil || want.Name == nil || *got.Name != *want.Name {
		t.Errorf("chained name %v, want %v", got.Name, want.Name)
	}
	lock := "com.apple.mobile.lockdown.remote.trusted"
	if p := got.Properties.Dict("Services").Dict(lock).String("Port"); p == "" || p == want.Properties.Dict("Services").Dict(lock).String("Port") {
		t.Errorf("chained %s at port %q: want its own forwarder", lock, p)
	}
	if info := pairInfo(t, fakeB, dylibtest.PairRequest(got.UUID)); info.String("udid") != udid {
		t.Errorf("chained Pair answered for %q", info.String("udid"))
	}
}

// The bridge's flags: each needs --cds-bridge, a build has three parts,
// and tunneld takes them only with --advertise backend (usage errors,
// before anything starts).
func TestCDSFlagsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"backend", "--simulate", "--cds-build", testCDSBuild.ID()},
		{"backend", "--simulate", "--accept-unknown-builds"},
		{"backend", "--simulate", "--cds-socket", "/tmp/x.sock"},
		{"backend", "--simulate", "--cds-bridge", "--cds-build", "a,b"},
		{"backend", "--simulate", "--cds-bridge", "--cds-socket", "/tmp/[x"},
		{"backend", "--simulate", "--cds-bridge", "--cds-name", ""},
		{"tunneld", "--simulate", "--port", "0", "--cds-bridge"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := execIn(ctx, io.Discard, io.Discard, map[string]string{"IOSMUX_STATE_DIR": t.TempDir()}, args...)
		cancel()
		if !isUsage(err) {
			t.Errorf("iosmux %v: %v, want a usage error", args, err)
		}
	}
}
