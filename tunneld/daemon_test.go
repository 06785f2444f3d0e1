package tunneld_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunneld"
)

// TestSimulatedFleet is the acceptance run in-process (userspace
// mode): four simulated iPhones are listed in pymobiledevice3's JSON, each
// at a loopback address of its own where its RSD answers, and unplug,
// replug, reboot and a stalled device are healed (the reboot's new RSD
// port answers at the same address). Latencies are logged, not asserted.
func TestSimulatedFleet(t *testing.T) {
	testkit.CheckLeaks(t)
	f := fleet(t, 4, "")
	start := time.Now()
	r := daemon(t, f, nil)
	waitFor(t, "4 tunnels", func() bool { return len(listing(t, r)) == 4 })
	t.Logf("4 tunnels listed %v after start", time.Since(start).Round(time.Millisecond))

	m := listing(t, r)
	addrs := map[string]string{}
	for _, d := range f.Devices() {
		es := m[d.UDID()]
		if len(es) != 1 {
			t.Fatalf("%s: %d entries, want 1", d.UDID(), len(es))
		}
		ep := d.Endpoints()
		if es[0].Interface != "usbmux-"+d.UDID()+"-USB" || !ownLoopback(es[0].Address) || es[0].Port != int(ep.TrustedRSDPort) {
			t.Errorf("%s: entry %+v, device says port %d", d.UDID(), es[0], ep.TrustedRSDPort)
		}
		if other, dup := addrs[es[0].Address]; dup {
			t.Errorf("%s and %s share %s", d.UDID(), other, es[0].Address)
		}
		addrs[es[0].Address] = d.UDID()
		if got := rsdAt(t, es[0]); got != d.UDID() {
			t.Errorf("RSD at %s's listed address says %q", d.UDID(), got)
		}
		// Pair records: usbmuxd's and ours.
		if _, err := os.Stat(filepath.Join(r.records, d.UDID()+".plist")); err != nil {
			t.Errorf("no lockdown pair record in the folder: %v", err)
		}
	}
	for _, gt := range goiosTunnels(t, r) {
		if !gt.UserspaceTUN || gt.UserspaceTUNPort == 0 {
			t.Errorf("%s: userspace %v port %d", gt.UDID, gt.UserspaceTUN, gt.UserspaceTUNPort)
		}
		if got := rsdThroughProxy(t, gt); got != gt.UDID {
			t.Errorf("RSD through %s's tunnel says %q", gt.UDID, got)
		}
	}

	d0, d1, d2 := f.Devices()[0], f.Devices()[1], f.Devices()[2]
	if err := d0.Unplug(); err != nil {
		t.Fatal(err)
	}
	t.Logf("unplugged: left the listing after %v", waitFor(t, "unplugged device to leave", func() bool { return !listed(t, r, d0.UDID()) }).Round(time.Millisecond))
	if n := len(listing(t, r)); n != 3 {
		t.Errorf("%d devices listed after one unplug, want 3", n)
	}
	if err := d0.Replug(); err != nil {
		t.Fatal(err)
	}
	t.Logf("replugged: back after %v", waitFor(t, "replugged device", func() bool { return listed(t, r, d0.UDID()) }).Round(time.Millisecond))

	if err := d1.Reboot(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("reboot: left after %v", waitFor(t, "rebooting device to leave", func() bool { return !listed(t, r, d1.UDID()) }).Round(time.Millisecond))
	up := time.Now()
	if err := d1.WaitState(t.Context(), sim.StatePlugged); err != nil {
		t.Fatal(err)
	}
	t.Logf("reboot: device up after %v, listed %v after that", time.Since(up).Round(time.Millisecond),
		waitFor(t, "rebooted device", func() bool { return listed(t, r, d1.UDID()) }).Round(time.Millisecond))
	if e := listing(t, r)[d1.UDID()][0]; addrs[e.Address] != d1.UDID() || e.Port != int(d1.Endpoints().TrustedRSDPort) || rsdAt(t, e) != d1.UDID() {
		t.Errorf("after reboot listed %+v, want the same loopback address with the device's new RSD port %d", e, d1.Endpoints().TrustedRSDPort)
	}

	d2.Stall(true)
	t.Logf("stall: silent device left after %v", waitFor(t, "stalled device to leave", func() bool { return !listed(t, r, d2.UDID()) }).Round(time.Millisecond))
	d2.Stall(false)
	t.Logf("stall: back %v after the device answered again", waitFor(t, "thawed device", func() bool { return listed(t, r, d2.UDID()) }).Round(time.Millisecond))

	_, metrics := get(t, r.url(tunneld.APIPMD3, "/metrics"))
	// Seven tunnels were listed (four, then three reconnects), each with
	// its set-up time and steps.
	for _, want := range []string{`iosmux_tunnels{path="usbmux-usb"} 4`, "iosmux_tunnel_reconnects_total 3", `iosmux_errors_total{kind="tunnel_dead"} 1`,
		`iosmux_tunnel_setup_seconds_count{path="usbmux-usb"} 7`, `iosmux_tunnel_setup_step_seconds_count{step="lockdown session"} 7`,
		`iosmux_tunnel_setup_step_seconds_count{step="trusted RSD catalog"} 7`, `iosmux_tunnel_setup_step_seconds_count{step="listed"} 7`} {
		waitFor(t, "metrics "+want, func() bool {
			_, metrics = get(t, r.url(tunneld.APIPMD3, "/metrics"))
			return contains(metrics, want)
		})
	}
	if !contains(metrics, `iosmux_tunnel_bytes_total{direction="out"}`) {
		t.Errorf("no byte counters in\n%s", metrics)
	}

	// Pair records survive: nothing was paired twice.
	for _, d := range f.Devices() {
		b, err := os.ReadFile(filepath.Join(r.records, d.UDID()+".plist"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lockdown.ParsePairRecord(b); err != nil {
			t.Errorf("%s: record: %v", d.UDID(), err)
		}
	}

	// /shutdown stops the daemon; its reply still arrives.
	code, body := get(t, r.url(tunneld.APIPMD3, "/shutdown"))
	if code != 200 || !strings.Contains(string(body), "Server shutting down...") {
		t.Errorf("/shutdown = %d %s", code, body)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run after /shutdown: %v", err)
		}
		r.stopOnce.Do(func() {})
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after /shutdown")
	}
}
