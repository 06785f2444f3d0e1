// Package sim_test runs third-party clients known to work with real iPhones
// against github.com/iosmux/iosmux/sim, unchanged: libimobiledevice's
// tools, appium-ios-remotexpc (usbmux and RSD clients) and go-ios v1.3.2
// (usbmux/lockdown in process; its tunnel clients from goiossim/, a module
// of its own).
package sim_test

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/sim/simtest"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startFleet runs a fleet for the test.
func startFleet(t *testing.T, cfg sim.FleetConfig) *sim.Fleet {
	t.Helper()
	if cfg.LockdownKey == nil {
		cfg.LockdownKey = testenv.RSAKey()
	}
	return simtest.StartFleet(t, cfg)
}

func udids(f *sim.Fleet) []string {
	var out []string
	for _, d := range f.Devices() {
		out = append(out, d.UDID())
	}
	sort.Strings(out)
	return out
}

// hostTunnel opens a CoreDeviceProxy tunnel to d with our host side
// (lockdown pairing, service TLS, CDTunnel, a userspace stack) and returns
// a loopback forwarder to the trusted RSD.
func hostTunnel(t *testing.T, f *sim.Fleet, d *sim.Device) (rsdAddr string, ns *utun.Netstack, params tunnel.Params) {
	t.Helper()
	tn := simtest.OpenTunnel(t, f, d)
	ns, params = tn.Net, tn.Params
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fwd := utun.NewForwarder(ln, netipAddrPort(params), ns.DialContext, nil)
	t.Cleanup(func() { fwd.Close() })
	return fwd.Addr().String(), ns, params
}

func netipAddrPort(p tunnel.Params) netip.AddrPort {
	return netip.AddrPortFrom(p.ServerAddress, p.ServerRSDPort)
}
