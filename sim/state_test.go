package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
)

// TestStatePersists: identity, the RemotePairing hosts and the lockdown
// pairing outlive the process.
func TestStatePersists(t *testing.T) {
	testkit.CheckLeaks(t)
	dir := t.TempDir()
	ctx := testCtx(t)
	store := pairing.RecordStore{Dir: t.TempDir()}

	r1 := newRig(t)
	d1, err := New(Config{Index: 5, StateDir: dir, Mux: r1.srv, PairingAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	id1 := d1.Identity()
	if _, err := r1.pairLockdown(t, d1); err != nil {
		t.Fatal(err)
	}
	if _, err := pairing.Pair(ctx, &pairing.PairConfig{Host: pairing.ClientConfig{HostName: "sim-test"},
		Dial: rppDial(d1.Endpoints().NetworkPairing), Store: store}); err != nil {
		t.Fatal(err)
	}
	rec, _ := r1.srv.PairRecord(id1.UDID)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{identityFile, keyFile, hostsFile, recordFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v", f, err, fi.Mode())
		}
	}

	// A new process: another seed, a fresh usbmuxd, Trust refused from now
	// on. The identity comes from disk and both pairings still work.
	r2 := newRig(t)
	d2, err := New(Config{Index: 5, Seed: "other", StateDir: dir, Mux: r2.srv, PairingAddr: "127.0.0.1:0", Trust: TrustDeny})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if d2.Identity().UDID != id1.UDID || d2.Identity().SerialNumber != id1.SerialNumber {
		t.Fatalf("identity changed across restarts: %s → %s", id1.UDID, d2.Identity().UDID)
	}
	res, err := pairing.Pair(ctx, &pairing.PairConfig{Host: pairing.ClientConfig{HostName: "sim-test"},
		Dial: rppDial(d2.Endpoints().NetworkPairing), Store: store})
	if err != nil || !res.AlreadyPaired {
		t.Errorf("RemotePairing after restart: %+v, %v", res, err)
	}
	got, ok := r2.srv.PairRecord(id1.UDID)
	if !ok || string(got) != string(rec) {
		t.Fatal("usbmuxd did not get the lockdown pair record back")
	}
	parsed, err := lockdown.ParsePairRecord(got)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := lockdown.DialUsbmux(ctx, r2.client, mustUSB(t, r2, d2).DeviceID, lockdown.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	if s, err := lc.StartSession(ctx, parsed); err != nil || !s.TLS {
		t.Errorf("lockdown session after restart: %+v, %v", s, err)
	}

	// A corrupt identity file is an error, never silently replaced.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, identityFile), []byte("{"), 0o600)
	if _, err := New(Config{StateDir: bad, LockdownKey: testKey()}); err == nil || !strings.Contains(err.Error(), "identity") {
		t.Errorf("corrupt identity: %v", err)
	}
}

// TestFleetControl drives a fleet through the control endpoint.
func TestFleetControl(t *testing.T) {
	testkit.CheckLeaks(t)
	f, err := StartFleet(FleetConfig{Count: 3, Profile: MustProfile("17.4"), Loopback: true, LockdownKey: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv := httptest.NewServer(f.Handler())
	defer srv.Close()
	ctx := testCtx(t)
	get := func(path string, v any) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(v)
		return resp.StatusCode
	}
	post := func(path string) int {
		resp, err := http.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var all []DeviceStatus
	if code := get("/devices", &all); code != 200 || len(all) != 3 {
		t.Fatalf("GET /devices = %d, %d devices", code, len(all))
	}
	udid := all[1].UDID
	client := usbmuxClient(f.UsbmuxSocket())
	list, err := client.ListDevices(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("usbmuxd lists %d devices, %v", len(list), err)
	}
	if code := post("/devices/" + udid + "/unplug"); code != 200 {
		t.Fatalf("unplug: %d", code)
	}
	if list, _ := client.ListDevices(ctx); len(list) != 2 {
		t.Errorf("after unplug usbmuxd lists %d", len(list))
	}
	var one DeviceStatus
	if get("/devices/"+udid, &one); one.State != "unplugged" {
		t.Errorf("state %q", one.State)
	}
	post("/devices/all/replug")
	if list, _ := client.ListDevices(ctx); len(list) != 3 {
		t.Errorf("after replug usbmuxd lists %d", len(list))
	}
	for path, want := range map[string]int{
		"/devices/" + udid + "/trust?answer=deny": 200,
		"/devices/" + udid + "/stall?on=false":    200,
		"/devices/" + udid + "/garbage?on=false":  200,
		"/devices/" + udid + "/reset?after=0":     200,
		"/devices/" + udid + "/reboot?down=0s":    200,
		"/devices/" + udid + "/explode":           400,
		"/devices/" + udid + "/reboot?down=soon":  400,
		"/devices/nope/unplug":                    404,
	} {
		if code := post(path); code != want {
			t.Errorf("POST %s = %d, want %d", path, code, want)
		}
	}
	d, _ := f.Device(udid)
	if err := d.WaitState(ctx, StatePlugged); err != nil {
		t.Fatal(err)
	}
	if get("/devices/"+udid, &one); one.Faults.Trust != "deny" || one.Stats.Boots != 2 {
		t.Errorf("after faults: %+v", one)
	}
	c, err := f.ServeControl("unix:" + filepath.Join(t.TempDir(), "control"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}

// TestFleetRestartKeepsIdentities: the same state directory gives the same
// devices.
func TestFleetRestartKeepsIdentities(t *testing.T) {
	testkit.CheckLeaks(t)
	dir := t.TempDir()
	start := func() []string {
		f, err := StartFleet(FleetConfig{Count: 2, StateDir: dir, LockdownKey: testKey()})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if f.UsbmuxSocket() != filepath.Join(dir, "usbmuxd") {
			t.Errorf("socket %s", f.UsbmuxSocket())
		}
		var out []string
		for _, e := range f.Endpoints().Devices {
			out = append(out, e.UDID)
		}
		return out
	}
	a, b := start(), start()
	if strings.Join(a, ",") != strings.Join(b, ",") || a[0] == a[1] {
		t.Errorf("fleet identities %v then %v", a, b)
	}
}

// TestLinkRate: the bucket paces bytes to the configured rate (fake clock).
func TestLinkRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := linkBucket(40_000_000)
		done := make(chan struct{})
		start := time.Now()
		for range 400 {
			b.Take(100_000, done) // 40 MB
		}
		// One burst (50 ms of rate, 2 MB) is free; the rest takes 0.95 s.
		if got := time.Since(start); got < 940*time.Millisecond || got > 960*time.Millisecond {
			t.Errorf("40 MB at 40 MB/s took %v of fake time", got)
		}
		close(done)
		if b.Take(1<<30, done) {
			t.Error("take succeeded after done closed")
		}
	})
}
