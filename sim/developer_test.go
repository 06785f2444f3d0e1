package sim

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/amfi"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
)

// testDDI is the synthetic DDI bundle; its second identity is BoardId 14,
// ChipID 0x8120, the first simulated model (index 0).
const testDDI = "../services/mounter/ddi/testdata/ddi_restore"

// rsdOpener opens a CoreDeviceProxy tunnel to d and reads its trusted RSD.
func (r *rig) rsdOpener(t *testing.T, ctx context.Context, d *Device) *reach.RSD {
	t.Helper()
	conn, err := r.coreDeviceProxy(t, d)
	if err != nil {
		t.Fatalf("CoreDeviceProxy: %v", err)
	}
	ns, p := hostTunnel(t, ctx, conn)
	o, err := reach.NewRSD(ctx, ns.DialContext, netip.AddrPortFrom(p.ServerAddress, p.ServerRSDPort), reach.RSDConfig{Label: "sim-test"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func listed(o *reach.RSD, name string) bool {
	_, err := o.Lookup(reach.Names{RSD: name})
	return err == nil
}

// TestDeveloperMode: Developer Mode starts off; amfi enable through usbmuxd
// lockdown arms it, the device reboots, accept turns it on; every status
// source agrees on both paths; the state survives a restart.
func TestDeveloperMode(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	state := t.TempDir()
	d := r.device(t, Config{Profile: MustProfile("17.4"), StateDir: state, RebootDown: 50 * time.Millisecond})
	ctx := testCtx(t)
	if _, err := r.pairLockdown(t, d); err != nil {
		t.Fatal(err)
	}
	lo, err := reach.NewLockdown(ctx, r.client, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	ro := r.rsdOpener(t, ctx, d)
	for _, o := range []reach.Opener{lo, ro} {
		if on, err := amfi.Status(ctx, o); err != nil || on {
			t.Errorf("%T: amfi.Status = %v, %v; want off", o, on, err)
		}
		if on, err := mounter.DeveloperModeStatus(ctx, o); err != nil || on {
			t.Errorf("%T: QueryDeveloperModeStatus = %v, %v; want off", o, on, err)
		}
	}
	if err := amfi.Run(ctx, ro, amfi.ActionAccept); !errors.Is(err, amfi.ErrNotArmed) {
		t.Errorf("accept before arming: %v", err)
	}
	d.SetPasscode(true)
	if _, err := amfi.Enable(ctx, lo, amfi.EnableConfig{}); !errors.Is(err, amfi.ErrPasscodeSet) {
		t.Fatalf("enable with a passcode: %v", err)
	}
	d.SetPasscode(false)
	boots := d.Stats().Boots
	var steps []amfi.Step
	no, err := amfi.Enable(ctx, lo, amfi.EnableConfig{Progress: func(s amfi.Step) { steps = append(steps, s) }})
	if err != nil {
		t.Fatalf("enable: %v (steps %v)", err, steps)
	}
	if !d.DeveloperMode() || d.Stats().Boots != boots+1 || no.UDID() != d.UDID() {
		t.Errorf("after enable: on %v, boots %d → %d", d.DeveloperMode(), boots, d.Stats().Boots)
	}
	ro = r.rsdOpener(t, ctx, d) // the reboot ended the tunnel
	if on, err := amfi.Status(ctx, ro); err != nil || !on {
		t.Errorf("over RSD after enable: %v, %v", on, err)
	}
	if on, err := mounter.DeveloperModeStatus(ctx, ro); err != nil || !on {
		t.Errorf("QueryDeveloperModeStatus after enable: %v, %v", on, err)
	}
	if _, err := amfi.Enable(ctx, no, amfi.EnableConfig{}); !errors.Is(err, amfi.ErrAlreadyOn) {
		t.Errorf("enable again: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := r.device(t, Config{Profile: MustProfile("17.4"), StateDir: state})
	if !d2.DeveloperMode() {
		t.Error("Developer Mode was lost across a restart")
	}
}

// TestDDIMount: the personalized mount through a tunnel's RSD with the TSS
// stand-in lists the DDI service in a fresh Handshake (and through
// lockdown); unmount through usbmuxd unlists it; after a reboot nothing is
// mounted and a re-mount takes the offline branch.
func TestDDIMount(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("18.2"), StateDir: t.TempDir(), DeveloperMode: true, RebootDown: 10 * time.Millisecond})
	ctx := testCtx(t)
	if _, err := r.pairLockdown(t, d); err != nil {
		t.Fatal(err)
	}
	ro := r.rsdOpener(t, ctx, d)
	for _, name := range []string{reach.Mounter.RSD, reach.AMFI.RSD} {
		if !listed(ro, name) {
			t.Errorf("%s not listed", name)
		}
	}
	for _, name := range []string{reach.OpenStdioSocket.RSD, reach.Heartbeat.RSD, "com.apple.mobile.storage_mounter_proxy.bridge"} {
		if listed(ro, name) {
			t.Errorf("%s listed, but not served (or not mounted)", name)
		}
	}
	lo, err := reach.NewLockdown(ctx, r.client, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lo.Open(ctx, reach.Names{Lockdown: "com.apple.coredevice.openstdiosocket.lockdown"}); !errors.Is(err, reach.ErrNotListed) {
		t.Errorf("an unknown lockdown service: %v", err)
	}

	standIn := &tss.StandIn{Lookup: func(ecid uint64) (tss.KnownDevice, bool) { return d.Signing(), ecid == d.Identity().ECID }}
	srv := httptest.NewServer(standIn)
	defer srv.Close()
	b, err := ddi.Open(testDDI)
	if err != nil {
		t.Fatal(err)
	}
	cfg := mounter.MountConfig{Bundle: b, TSS: &tss.Client{URL: srv.URL}}
	res, err := mounter.Mount(ctx, ro, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest != mounter.FromTSS || standIn.Requests() != 1 || !slices.Equal(res.Services, []string{reach.AppService.RSD, reach.DeviceInfo.RSD, reach.OpenStdioSocket.RSD, reach.DebugProxy.RSD}) {
		t.Errorf("mount %+v, %d TSS requests", res, standIn.Requests())
	}
	if ep := d.Endpoints(); ep.DDI == "" {
		t.Error("Endpoints shows no DDI")
	}
	stdio, err := ro.Open(ctx, reach.OpenStdioSocket)
	if err != nil {
		t.Fatal(err)
	}
	var u [16]byte
	if _, err := io.ReadFull(stdio, u[:]); err != nil || u[6]>>4 != 4 {
		t.Errorf("openstdiosocket sent %x, %v", u, err)
	}
	stdio.Close()
	if st, err := mounter.List(ctx, lo); err != nil || !st.Mounted() {
		t.Errorf("through lockdown: %+v, %v", st, err)
	}

	if err := mounter.Unmount(ctx, lo); err != nil {
		t.Fatal(err)
	}
	if err := mounter.Unmount(ctx, lo); !errors.Is(err, mounter.ErrNotMounted) {
		t.Errorf("second unmount: %v", err)
	}
	if _, err := ro.Refresh(ctx); err != nil || listed(ro, reach.OpenStdioSocket.RSD) {
		t.Errorf("after unmount the DDI service is still listed (%v)", err)
	}

	// Mounted again through lockdown (offline: the device kept the
	// manifest), then a reboot unmounts; the nonce survives it, so the
	// kept manifest still serves.
	if res, err := mounter.Mount(ctx, lo, cfg); err != nil || res.Manifest != mounter.FromDevice || standIn.Requests() != 1 {
		t.Fatalf("re-mount through lockdown %+v, %v", res, err)
	}
	if err := d.Reboot(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitState(ctx, StatePlugged); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.MountedDDI(); ok {
		t.Error("still mounted after a reboot")
	}
	ro = r.rsdOpener(t, ctx, d)
	if listed(ro, reach.OpenStdioSocket.RSD) {
		t.Error("DDI service listed after a reboot")
	}
	if res, err := mounter.Mount(ctx, ro, cfg); err != nil || res.Manifest != mounter.FromDevice || standIn.Requests() != 1 {
		t.Errorf("mount after reboot %+v, %v", res, err)
	}
}

// TestSeedManifest: a device started with a seeded manifest mounts offline
// at once; a device of another model is not seeded.
func TestSeedManifest(t *testing.T) {
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("17.4"), DeveloperMode: true, SeedManifests: []string{testDDI}})
	other := r.device(t, Config{Index: 1, Profile: MustProfile("17.4"), DeveloperMode: true, SeedManifests: []string{testDDI}})
	ctx := testCtx(t)
	b, _ := ddi.Open(testDDI)
	for _, dev := range []*Device{d, other} {
		if _, err := r.pairLockdown(t, dev); err != nil {
			t.Fatal(err)
		}
	}
	lo, _ := reach.NewLockdown(ctx, r.client, d.UDID())
	res, err := mounter.Mount(ctx, lo, mounter.MountConfig{Bundle: b, TSS: &tss.Client{URL: "http://127.0.0.1:1/never"}})
	if err != nil || res.Manifest != mounter.FromDevice {
		t.Fatalf("seeded mount %+v, %v", res, err)
	}
	lo2, _ := reach.NewLockdown(ctx, r.client, other.UDID())
	if _, err := mounter.Mount(ctx, lo2, mounter.MountConfig{Bundle: b}); !errors.Is(err, ddi.ErrNoIdentity) {
		t.Errorf("another model: %v", err)
	}
}
