package tunneld_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunneld"
)

// chanMonitor reports the events a test sends it.
type chanMonitor chan discovery.Event

func (m chanMonitor) Run(ctx context.Context, emit func(discovery.Event)) error {
	for {
		select {
		case ev := <-m:
			emit(ev)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TestRemotePairingPaths: a device seen on its USB-NCM link (the simulator's
// loopback stand-in) is paired over RSD on first sight, as pymobiledevice3's
// tunneld does, and tunnelled over P2; when that link goes, the manager
// fails over to its Wi-Fi RemotePairing port (P3) with the new record.
func TestRemotePairingPaths(t *testing.T) {
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), Loopback: true,
		SocketPath: shortSocket(t), LockdownKey: lockdownKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	dev := f.Devices()[0]
	ep := dev.Endpoints()
	mon := make(chanMonitor, 4)
	r := daemon(t, f, func(c *tunneld.Config) {
		c.Usbmux = nil // only the monitor's sightings
		c.Monitors = []discovery.Monitor{mon}
	})
	ncm := discovery.Event{Kind: discovery.Attached, Source: discovery.SourceNCM, Conn: discovery.ConnUSBNCM, UDID: dev.UDID(),
		Addr: netip.MustParseAddrPort(ep.UntrustedRSD), Interface: "lo", Instance: "ncm"}
	wifi := discovery.Event{Kind: discovery.Attached, Source: discovery.SourceRemotePairing, Conn: discovery.ConnWiFi, UDID: dev.UDID(),
		Addr: netip.MustParseAddrPort(ep.NetworkPairing), Interface: "lo", Instance: "wifi"}
	mon <- ncm
	waitFor(t, "the USB-NCM tunnel", func() bool { return listed(t, r, dev.UDID()) })
	ts := r.d.Tunnels()
	if len(ts) != 1 || ts[0].Path != "usb-ncm" || ts[0].Key != "127.0.0.1" || ts[0].Address != ep.TunnelAddress || len(ts[0].Services) == 0 {
		t.Fatalf("tunnels = %+v", ts)
	}
	if _, err := os.Stat(filepath.Join(r.records, "remote_"+dev.UDID()+".plist")); err != nil {
		t.Errorf("no RemotePairing record after pairing over USB-NCM: %v", err)
	}
	mon <- wifi
	ncm.Kind = discovery.Detached
	mon <- ncm
	waitFor(t, "the Wi-Fi tunnel", func() bool {
		ts := r.d.Tunnels()
		return len(ts) == 1 && ts[0].Path == "wifi"
	})
	for _, gt := range goiosTunnels(t, r) {
		if got := rsdThroughProxy(t, gt); got != dev.UDID() {
			t.Errorf("RSD through the Wi-Fi tunnel says %q", got)
		}
	}
}
