package backend

import (
	"os"
	"slices"
	"testing"

	"github.com/iosmux/iosmux/dylib"
	"github.com/iosmux/iosmux/dylib/dylibtest"
	"github.com/iosmux/iosmux/mercury"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/xpc"
)

// testDDI is a DDI folder with a build identity for the 18.2 profile's
// board.
const testDDI = "../services/mounter/ddi/testdata/ddi_restore"

// The DDI and Developer Mode facts come from the simulated iPhone's own
// image mounter, reached through the backend: Developer Mode off is read
// as off (no flag); switched on, its flag is set; a DDI mounted through
// the backend (the TSS stand-in signs) makes the device list its DDI
// services, and without any refresh the dylib gets a DEVICE_UPDATE whose
// Services hold them and Pair reports them available; after an unmount
// they are gone again.
func TestBridgeDeveloperFacts(t *testing.T) {
	dir, err := os.MkdirTemp("", "backend-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), SocketPath: dir + "/usbmuxd",
		StateDir: dir + "/state", LockdownKey: testKey(), TSSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	d := f.Devices()[0]
	h := openTunnel(t, f, d)
	b := newBackend(t, nil)
	if err := b.Attach(testCtx(t), h.link()); err != nil {
		t.Fatal(err)
	}
	fake, err := dylibtest.Listen(dylibtest.Config{Dir: t.TempDir(), Hello: dylib.Hello{Build: fakeBuild}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	br := newBridge(t, BridgeConfig{Glob: fake.Path()})
	br.Add(b)
	if _, err := fake.WaitConnected(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	facts := func(what string, ok func(*mercury.Facts) bool) *mercury.Facts {
		t.Helper()
		var fc *mercury.Facts
		waitUntil(t, what, func() bool { fc = br.factsOf(b); return fc != nil && ok(fc) })
		return fc
	}
	pairInfo := func(u xpc.UUID) *xpc.Dict {
		t.Helper()
		o := fake.Invoke(testCtx(t), dylibtest.PairRequest(u))
		if !o.Handled {
			t.Fatalf("Pair passed through: %s", o.Why)
		}
		return o.Reply.Dict(mercury.KeyOutput).Dict("updatedSnapshot").Dict("deviceInfo")
	}

	f0 := facts("Developer Mode off", func(f *mercury.Facts) bool {
		return f.DeveloperMode == mercury.DeveloperModeDisabled && f.DDI.Known
	})
	if f0.DDI.Mounted || f0.DDI.ServicesAdvertised || !f0.ExtendedInfoLoaded {
		t.Fatalf("before mount: DDI %+v, extended %v", f0.DDI, f0.ExtendedInfoLoaded)
	}
	waitUntil(t, "attach", func() bool { return fake.Server() != nil && fake.Server().Attached(f0.DeviceUUID) })
	if p := pairInfo(f0.DeviceUUID).Int64("preparednessState"); p != mercury.PreparedExtendedDeviceInfoLoaded {
		t.Fatalf("preparedness %d with Developer Mode off", p)
	}

	if err := d.SetDeveloperMode(true); err != nil {
		t.Fatal(err)
	}
	br.Refresh()
	f1 := facts("Developer Mode on", func(f *mercury.Facts) bool { return f.DeveloperMode == mercury.DeveloperModeEnabled })
	if f1.Monotonic <= f0.Monotonic {
		t.Errorf("counter %d after a change, was %d", f1.Monotonic, f0.Monotonic)
	}
	want := mercury.PreparedDeveloperModeEnabledIfNeeded | mercury.PreparedExtendedDeviceInfoLoaded
	if info := pairInfo(f1.DeviceUUID); info.Int64("preparednessState") != want || info.Bool("areDeveloperDiskImageServicesAvailable") {
		t.Fatalf("preparedness %d (want %d), DDI available %v", info.Int64("preparednessState"), want, info.Bool("areDeveloperDiskImageServicesAvailable"))
	}

	// Mount the DDI through the backend, as a client of its RSD would.
	bundle, err := ddi.Open(testDDI)
	if err != nil {
		t.Fatal(err)
	}
	o, err := reach.NewRSD(testCtx(t), nil, b.Addr(), reach.RSDConfig{HostUUID: xpc.UUID{9}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := mounter.Mount(testCtx(t), o, mounter.MountConfig{Bundle: bundle, TSS: &tss.Client{URL: f.TSSURL()}})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	if res.Manifest != mounter.FromTSS {
		t.Errorf("mount took the %q branch", res.Manifest)
	}
	dev := waitDeviceFrame(t, fake, f1.DeviceUUID, func(d dylib.RemoteDevice) bool {
		return d.Properties.Dict("Services").Dict("com.apple.coredevice.openstdiosocket") != nil
	})
	if dev.Properties.Dict("Services").Dict("com.apple.coredevice.openstdiosocket").String("Port") == "" {
		t.Errorf("DDI service without a port: %v", dev.Properties.Dict("Services"))
	}
	f2 := facts("DDI available", func(f *mercury.Facts) bool { return f.DDI.Mounted && f.DDI.ServicesAdvertised })
	want |= mercury.PreparedDeveloperDiskImageServices
	if info := pairInfo(f2.DeviceUUID); info.Int64("preparednessState") != want || !info.Bool("areDeveloperDiskImageServicesAvailable") {
		t.Fatalf("after mount: preparedness %d (want %d), DDI available %v", info.Int64("preparednessState"), want, info.Bool("areDeveloperDiskImageServicesAvailable"))
	}

	if err := mounter.Unmount(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	br.Refresh()
	f3 := facts("DDI gone", func(f *mercury.Facts) bool { return !f.DDI.Mounted && !f.DDI.ServicesAdvertised })
	if info := pairInfo(f3.DeviceUUID); info.Bool("areDeveloperDiskImageServicesAvailable") {
		t.Error("DDI services claimed after the unmount")
	}
}

// waitDeviceFrame waits for a DEVICE_ATTACH or UPDATE of u that satisfies
// ok and returns it.
func waitDeviceFrame(t *testing.T, fake *dylibtest.Fake, u xpc.UUID, ok func(dylib.RemoteDevice) bool) dylib.RemoteDevice {
	t.Helper()
	var got dylib.RemoteDevice
	waitUntil(t, "a matching DEVICE_ATTACH/UPDATE", func() bool {
		return slices.ContainsFunc(fake.Frames(), func(fr dylib.Frame) bool {
			if fr.Kind != dylib.KindDeviceAttach && fr.Kind != dylib.KindDeviceUpdate {
				return false
			}
			d, err := dylib.ParseDevice(fr.Kind, fr.Payload)
			if err != nil || d.UUID != u || !ok(d) {
				return false
			}
			got = d
			return true
		})
	})
	return got
}

// Two backends (tunneld's one per device) share one bridge and one dylib
// connection: both devices attached, each Pair answered from its own
// device's facts; removing one backend detaches only its device.
func TestBridgeTwoBackends(t *testing.T) {
	dir, err := os.MkdirTemp("", "backend-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := sim.StartFleet(sim.FleetConfig{Count: 2, Profile: sim.MustProfile(sim.DefaultProfile), SocketPath: dir + "/usbmuxd",
		LockdownKey: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fake, err := dylibtest.Listen(dylibtest.Config{Dir: t.TempDir(), Hello: dylib.Hello{Build: fakeBuild}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	br := newBridge(t, BridgeConfig{Glob: fake.Path()})
	var bs []*Backend
	for _, d := range f.Devices() {
		h := openTunnel(t, f, d)
		b := newBackend(t, nil)
		if err := b.Attach(testCtx(t), h.link()); err != nil {
			t.Fatal(err)
		}
		br.Add(b)
		bs = append(bs, b)
	}
	srv, err := fake.WaitConnected(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids []xpc.UUID
	for i, b := range bs {
		var fc *mercury.Facts
		waitUntil(t, "facts", func() bool { fc = br.factsOf(b); return fc != nil && fc.DDI.Known })
		waitUntil(t, "attach", func() bool { return srv.Attached(fc.DeviceUUID) })
		o := fake.Invoke(testCtx(t), dylibtest.PairRequest(fc.DeviceUUID))
		if !o.Handled {
			t.Fatalf("Pair on device %d: %s", i, o.Why)
		}
		info := o.Reply.Dict(mercury.KeyOutput).Dict("updatedSnapshot").Dict("deviceInfo")
		if info.String("udid") != f.Devices()[i].UDID() || info.UUID("identifier") != fc.DeviceUUID {
			t.Errorf("device %d answered as %s (%v)", i, info.String("udid"), info.UUID("identifier"))
		}
		ids = append(ids, fc.DeviceUUID)
	}
	if ids[0] == ids[1] {
		t.Fatal("two devices share a CoreDevice UUID")
	}
	br.Remove(bs[1])
	waitUntil(t, "DEVICE_DETACH", func() bool { return !srv.Attached(ids[1]) })
	if !srv.Attached(ids[0]) {
		t.Error("the other device was detached too")
	}
	if o := fake.Invoke(testCtx(t), dylibtest.PairRequest(ids[1])); o.Handled {
		t.Error("answered for a removed backend's device")
	}
	if o := fake.Invoke(testCtx(t), dylibtest.PairRequest(ids[0])); !o.Handled {
		t.Errorf("the remaining device: %s", o.Why)
	}
}
