package backend

import (
	"bytes"
	"context"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/dylib"
	"github.com/iosmux/iosmux/dylib/dylibtest"
	"github.com/iosmux/iosmux/mercury"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/xpc"
)

// The DDI and Developer Mode facts come from the device's image mounter,
// reached through the backend's own RSD: Developer Mode on sets its
// preparedness flag; a DDI mounted through the backend is seen as mounted
// (but not as available while the device lists no DDI service); Developer
// Mode off clears the flag and raises the snapshot counter.
func TestBridgeMounterFacts(t *testing.T) {
	var devMode atomic.Bool
	devMode.Store(true)
	ms := mounter.NewServer(mounter.ServerConfig{DeveloperMode: devMode.Load})
	dir, err := os.MkdirTemp("", "backend-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile(sim.DefaultProfile), SocketPath: dir + "/usbmuxd",
		LockdownKey: testKey(), Services: []sim.Service{{Name: reach.Mounter.RSD, Entitlement: sim.LockdownTrusted,
			Serve: func(ctx context.Context, c net.Conn) { reach.ServeRSD(ctx, c, reach.Mounter, ms.Serve) }}}})
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
	br, err := b.StartBridge(BridgeConfig{Glob: fake.Path(), Scan: 50 * time.Millisecond, Builds: []dylib.Build{fakeBuild},
		Developer: b.MounterFacts()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Close() })
	if _, err := fake.WaitConnected(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	facts := func(ok func(*mercury.Facts) bool) *mercury.Facts {
		t.Helper()
		br.Refresh()
		var fc *mercury.Facts
		waitUntil(t, "facts", func() bool { fc = br.Facts(); return fc != nil && ok(fc) })
		return fc
	}
	pairInfo := func(u xpc.UUID) *xpc.Dict {
		t.Helper()
		o := fake.Invoke(testCtx(t), pairRequestFor(u))
		if !o.Handled {
			t.Fatalf("Pair passed through: %s", o.Why)
		}
		return o.Reply.Dict(mercury.KeyOutput).Dict("updatedSnapshot").Dict("deviceInfo")
	}

	f1 := facts(func(f *mercury.Facts) bool { return f.DeveloperMode == mercury.DeveloperModeEnabled && f.DDI.Known })
	if f1.DDI.Mounted || f1.DDI.ServicesAdvertised || !f1.ExtendedInfoLoaded {
		t.Fatalf("before mount: DDI %+v, extended %v", f1.DDI, f1.ExtendedInfoLoaded)
	}
	waitUntil(t, "attach", func() bool { return fake.Server() != nil && fake.Server().Attached(f1.DeviceUUID) })
	info := pairInfo(f1.DeviceUUID)
	want := mercury.PreparedDeveloperModeEnabledIfNeeded | mercury.PreparedExtendedDeviceInfoLoaded
	if p := info.Int64("preparednessState"); p != want || info.Bool("areDeveloperDiskImageServicesAvailable") {
		t.Fatalf("preparedness %d (want %d), DDI available %v", p, want, info.Bool("areDeveloperDiskImageServicesAvailable"))
	}

	// Mount an image through the backend (the stand-in mounter accepts any
	// manifest).
	o, err := reach.NewRSD(testCtx(t), nil, b.Addr(), reach.RSDConfig{HostUUID: xpc.UUID{9}})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mounter.Open(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte{0xdd}, 4096)
	if err := mc.Upload(testCtx(t), mounter.ImageTypePersonalized, []byte("manifest"), bytes.NewReader(img), int64(len(img)), nil); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if err := mc.Mount(testCtx(t), []byte("manifest"), []byte("trustcache"), nil); err != nil {
		t.Fatalf("mount: %v", err)
	}
	mc.Close()
	f2 := facts(func(f *mercury.Facts) bool { return f.DDI.Mounted })
	if f2.DDI.ServicesAdvertised || f2.Monotonic != f1.Monotonic {
		// Mounted but no DDI service listed: nothing a snapshot says changed.
		t.Errorf("after mount: DDI %+v, counter %d → %d", f2.DDI, f1.Monotonic, f2.Monotonic)
	}
	if info := pairInfo(f2.DeviceUUID); info.Bool("areDeveloperDiskImageServicesAvailable") {
		t.Error("DDI services claimed while the device lists none")
	}

	devMode.Store(false)
	f3 := facts(func(f *mercury.Facts) bool { return f.DeveloperMode == mercury.DeveloperModeDisabled })
	if f3.Monotonic <= f2.Monotonic {
		t.Errorf("counter %d after a change, was %d", f3.Monotonic, f2.Monotonic)
	}
	if p := pairInfo(f3.DeviceUUID).Int64("preparednessState"); p&mercury.PreparedDeveloperModeEnabledIfNeeded != 0 {
		t.Errorf("preparedness %d claims Developer Mode", p)
	}
}
