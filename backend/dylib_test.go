package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/dylib"
	"github.com/iosmux/iosmux/dylib/dylibtest"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/mercury"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/xpc"
)

var fakeBuild = dylib.Build{CoreDevice: "test-cd", CoreDeviceUtilities: "test-cdu", Mercury: "test-m"}

// bridged is the acceptance set-up: a simulated iPhone with a tunnel, the
// backend serving it, a fake dylib, and the bridge between them.
type bridged struct {
	b    *Backend
	d    *sim.Device
	f    *sim.Fleet
	fake *dylibtest.Fake
	br   *Bridge
	srv  *dylib.Server
	dev  dylib.RemoteDevice
	mux  *usbmux.Client
}

func startBridged(t *testing.T, wait time.Duration) *bridged {
	t.Helper()
	f, d := simDevice(t, sim.DefaultProfile)
	h := openTunnel(t, f, d)
	b := newBackend(t, nil)
	if err := b.Attach(testCtx(t), h.link()); err != nil {
		t.Fatal(err)
	}
	fake, err := dylibtest.Listen(dylibtest.Config{Dir: t.TempDir(), Hello: dylib.Hello{Arch: "x86_64", DylibVersion: "fake", Build: fakeBuild},
		Server: dylib.ServerConfig{Wait: wait}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})
	br := newBridge(t, BridgeConfig{Glob: fake.Path(), Pairing: UsbmuxPairing{Mux: mux}})
	br.Add(b)
	srv, err := fake.WaitConnected(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	x := &bridged{b: b, d: d, f: f, fake: fake, br: br, srv: srv, mux: mux}
	x.dev = x.waitDevice(t, func(dylib.RemoteDevice) bool { return true })
	return x
}

// waitDevice waits for an attached device that satisfies ok.
func (x *bridged) waitDevice(t *testing.T, ok func(dylib.RemoteDevice) bool) dylib.RemoteDevice {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, fr := range x.fake.Frames() {
			if fr.Kind != dylib.KindDeviceAttach && fr.Kind != dylib.KindDeviceUpdate {
				continue
			}
			if d, err := dylib.ParseDevice(fr.Kind, fr.Payload); err == nil && x.srv.Attached(d.UUID) && ok(d) {
				cur, _ := x.srv.Device(d.UUID)
				if ok(cur) {
					return cur
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no matching DEVICE_ATTACH/UPDATE")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Acceptance: HELLO → DEVICE_ATTACH with the simulated device's real
// properties; Pair on the paired device → the spec's keys and wire types
// with the device's values; after the device forgets the host → not
// success.
func TestBridgeSimulated(t *testing.T) {
	x := startBridged(t, 5*time.Second)
	id := x.d.Identity()
	prof := x.d.Profile()

	// DEVICE_ATTACH: the device's own Properties, its name, and the
	// services at the backend's ports.
	p := x.dev.Properties
	for k, want := range map[string]string{"UniqueDeviceID": id.UDID, "ProductType": id.ProductType, "SerialNumber": id.SerialNumber,
		"OSVersion": prof.OSVersion, "BuildVersion": prof.BuildVersion, "HardwarePlatform": id.Platform} {
		if got := p.String(k); got != want {
			t.Errorf("properties %s = %q, want %q", k, got, want)
		}
	}
	if p.Int64("UniqueChipID") != int64(id.ECID) {
		t.Errorf("UniqueChipID %d, want %d", p.Int64("UniqueChipID"), id.ECID)
	}
	if x.dev.Name == nil || *x.dev.Name != id.DeviceName {
		t.Errorf("name %v, want %q", x.dev.Name, id.DeviceName)
	}
	svc := p.Dict("Services").Dict("com.apple.mobile.lockdown.remote.trusted")
	if svc == nil || svc.String("Port") == "" {
		t.Fatalf("Services lack the trusted lockdown shim: %v", p.Dict("Services").Keys())
	}
	if want := x.b.Handshake().Services; len(want) != p.Dict("Services").Len() {
		t.Errorf("%d services, the backend serves %d", p.Dict("Services").Len(), len(want))
	}
	if x.dev.OSState != dylib.OSStateConnected || x.dev.ServiceIdentifier.Dict("uuid").UUID("identifier") != x.dev.UUID {
		t.Errorf("osState %d, serviceIdentifier %v", x.dev.OSState, x.dev.ServiceIdentifier)
	}

	// Pair on the paired device, once its facts are all in.
	waitUntil(t, "Developer Mode read", func() bool {
		f := x.br.factsOf(x.b)
		return f != nil && f.DeveloperMode == mercury.DeveloperModeDisabled && f.DDI.Known
	})
	req := dylibtest.PairRequest(x.dev.UUID)
	o := x.fake.Invoke(testCtx(t), req)
	if !o.Handled {
		t.Fatalf("Pair on a paired device passed through: %s", o.Why)
	}
	if err := mercury.ValidateReply(req, o.Reply, mercury.DeviceConnectionChangeResultType); err != nil {
		t.Fatalf("reply does not validate: %v", err)
	}
	checkPairReplyShape(t, o.Reply)
	info := o.Reply.Dict(mercury.KeyOutput).Dict("updatedSnapshot").Dict("deviceInfo")
	want := map[string]xpc.Value{
		"identifier": x.dev.UUID, "pairingState": xpc.String("paired"), "state": xpc.String("connected"),
		"productType": xpc.String(id.ProductType), "osVersion": xpc.String(prof.OSVersion), "osBuild": xpc.String(prof.BuildVersion),
		"udid": xpc.String(id.UDID), "serialNumber": xpc.String(id.SerialNumber), "hardwareModel": xpc.String(id.Platform),
		"ecid": xpc.Uint64(id.ECID), "name": xpc.String(id.DeviceName), "reality": xpc.String("physical"),
		// No DDI mounted, no DDI service listed; Developer Mode off (the
		// simulator's default, read from its image mounter); no power
		// assertion held: only the extended-info flag.
		"areDeveloperDiskImageServicesAvailable": xpc.Bool(false), "preparednessState": xpc.Int64(mercury.PreparedExtendedDeviceInfoLoaded),
	}
	for k, v := range want {
		if !mercury.SameValue(info.Get(k), v) {
			t.Errorf("deviceInfo.%s = %#v, want %#v", k, info.Get(k), v)
		}
	}

	// The device forgets this host: the pairing is no longer real.
	ctx := testCtx(t)
	rec, err := lockdown.ReadPairRecord(ctx, x.mux, id.UDID)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := x.mux.ListDevices(ctx)
	var devID uint32
	for _, d := range list {
		if usbmux.SameUDID(d.UDID(), id.UDID) {
			devID = d.DeviceID
		}
	}
	lc, err := lockdown.DialUsbmux(ctx, x.mux, devID, lockdown.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.Unpair(ctx, rec); err != nil {
		t.Fatal(err)
	}
	lc.Close()
	x.br.Refresh()
	deadline := time.Now().Add(20 * time.Second)
	for f := x.br.factsOf(x.b); f == nil || f.PairRecord == mercury.PairVerified; f = x.br.factsOf(x.b) {
		if time.Now().After(deadline) {
			t.Fatal("bridge still reports a verified pairing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	o = x.fake.Invoke(testCtx(t), req)
	if o.Handled {
		t.Fatalf("Pair answered for an unpaired device: %v", o.Reply)
	}
	if o.Why != "iosmux: passthrough" {
		t.Errorf("why %q", o.Why)
	}
}

// checkPairReplyShape compares keys (in order) and wire types with the
// reply CoreDeviceService accepted (docs/protocols/coredevice-schema.md).
func checkPairReplyShape(t *testing.T, reply *xpc.Dict) {
	t.Helper()
	type kk struct {
		key  string
		kind xpc.Kind
	}
	check := func(where string, d *xpc.Dict, want []kk) {
		if d == nil {
			t.Fatalf("%s missing", where)
		}
		if d.Len() != len(want) {
			t.Errorf("%s has keys %v, want %d", where, d.Keys(), len(want))
		}
		for i, k := range d.Keys() {
			if i >= len(want) || k != want[i].key || d.Get(k).Kind() != want[i].kind {
				t.Errorf("%s key %d = %s (%v), want %+v", where, i, k, d.Get(k).Kind(), want[min(i, len(want)-1)])
			}
		}
	}
	S, D, A, U, I, B, U64 := xpc.KindString, xpc.KindDict, xpc.KindArray, xpc.KindUUID, xpc.KindInt64, xpc.KindBool, xpc.KindUint64
	check("reply", reply, []kk{{mercury.KeyActionIdentifier, S}, {mercury.KeyInvocationIdentifier, S}, {mercury.KeyDeviceIdentifier, S},
		{mercury.KeyCoreDeviceVersion, D}, {mercury.KeyOutput, D}})
	out := reply.Dict(mercury.KeyOutput)
	check("output", out, []kk{{"outcome", D}, {"updatedSnapshot", D}})
	check("outcome", out.Dict("outcome"), []kk{{"success", D}})
	snap := out.Dict("updatedSnapshot")
	check("snapshot", snap, []kk{{"state", D}, {"capabilityImplementations", A}, {"deviceInfo", D}, {"monotonicIdentifier", I}})
	check("snapshot.state", snap.Dict("state"), []kk{{"connected", D}})
	info := snap.Dict("deviceInfo")
	check("deviceInfo", info, []kk{{"identifier", U}, {"serviceDeviceIdentifier", D}, {"pairingState", S}, {"preparednessState", I},
		{"state", S}, {"visibilityClass", S}, {"isMobileDeviceOnly", B}, {"areDeveloperDiskImageServicesAvailable", B},
		{"potentialHostnames", A}, {"tags", A}, {"defaultUserCredentials", A}, {"providerSpecificValues", D}, {"additionalMetadata", D},
		{"productType", S}, {"osVersion", S}, {"osBuild", S}, {"udid", S}, {"serialNumber", S}, {"hardwareModel", S}, {"ecid", U64},
		{"name", S}, {"reality", S}})
	check("serviceDeviceIdentifier.uuid", info.Dict("serviceDeviceIdentifier").Dict("uuid"), []kk{{"identifier", U}, {"domain", S}})
}

// Failure semantics: iosmux silent → the dylib's timeout → passthrough;
// the socket closed mid-request → passthrough; then DETACH on detach.
func TestBridgeFailures(t *testing.T) {
	x := startBridged(t, 300*time.Millisecond)
	req := dylibtest.PairRequest(x.dev.UUID)
	hold := make(chan struct{})
	entered := make(chan struct{}, 8)
	x.br.testHookAnswer = func() {
		entered <- struct{}{}
		<-hold
	}
	start := time.Now()
	o := x.fake.Invoke(testCtx(t), req)
	if o.Handled || !strings.Contains(o.Why, "no answer within") {
		t.Fatalf("silent Go side: %+v", o)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("passthrough after %v", d)
	}
	<-entered

	done := make(chan dylibtest.Outcome, 1)
	go func() { done <- x.fake.Invoke(context.Background(), req) }()
	<-entered
	// Close the Go side's connection while the request is in flight.
	// (Client.Close waits for the held handler, so it runs aside.)
	x.br.mu.Lock()
	var closing []*bridgeClient
	for _, c := range x.br.clients {
		closing = append(closing, c)
	}
	x.br.mu.Unlock()
	closed := make(chan struct{})
	go func() {
		for _, c := range closing {
			c.c.Close()
		}
		close(closed)
	}()
	defer func() { <-closed }()
	select {
	case o := <-done:
		if o.Handled || !strings.Contains(o.Why, "passthrough") {
			t.Fatalf("socket closed mid-request: %+v", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no passthrough after the socket closed")
	}
	close(hold)
	x.br.testHookAnswer = nil

	// The bridge reconnects and offers the device again; detaching the
	// backend's device detaches it in the dylib.
	srv, err := x.fake.WaitConnected(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	x.srv = srv
	waitUntil(t, "re-attach", func() bool { return srv.Attached(x.dev.UUID) })
	if o := x.fake.Invoke(testCtx(t), req); !o.Handled {
		t.Fatalf("after reconnect: %s", o.Why)
	}
	x.b.Detach()
	x.br.Refresh()
	waitUntil(t, "DEVICE_DETACH", func() bool { return !srv.Attached(x.dev.UUID) })
	if o := x.fake.Invoke(testCtx(t), req); o.Handled {
		t.Fatal("answered for a detached device")
	}
}

// newBridge starts a bridge for tests: fast scans, the fake build known,
// a fresh state dir.
func newBridge(t testing.TB, cfg BridgeConfig) *Bridge {
	t.Helper()
	if cfg.Scan == 0 {
		cfg.Scan = 50 * time.Millisecond
	}
	cfg.Builds = append(cfg.Builds, fakeBuild)
	cfg.StateDir = t.TempDir()
	cfg.Logger = testLogger(t)
	br, err := NewBridge(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Close() })
	return br
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The device's CoreDevice UUID is kept per UDID across bridges.
func TestDeviceIDsPersist(t *testing.T) {
	dir := t.TempDir()
	a := &deviceIDs{path: dir + "/coredevice-ids.json"}
	u1, err := a.get("00008110-000000000000001E")
	if err != nil {
		t.Fatal(err)
	}
	b := &deviceIDs{path: dir + "/coredevice-ids.json"}
	u2, _ := b.get("00008110-000000000000001E")
	u3, _ := b.get("other")
	if u1 != u2 || u1 == u3 || u1.IsZero() {
		t.Fatalf("ids %v %v %v", u1, u2, u3)
	}
}
