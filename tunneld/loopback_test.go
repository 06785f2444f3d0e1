package tunneld_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/tunneld"
)

// TestUserspaceLoopback: in userspace mode each device is listed by
// pymobiledevice3's and appium's APIs at a loopback address of its own,
// where its RSD answers and every service its RSD lists is reached at the
// port listed (trusted lockdown's RSDCheckin here), while go-ios's listing
// keeps the tunnel address and its userspace proxy. Unplugged and plugged
// again, the device comes back at the same address.
func TestUserspaceLoopback(t *testing.T) {
	testkit.CheckLeaks(t)
	f := fleet(t, 2, "")
	r := daemon(t, f, nil)
	waitFor(t, "2 tunnels", func() bool { return len(listing(t, r)) == 2 })
	m := listing(t, r)
	for _, d := range f.Devices() {
		e := m[d.UDID()][0]
		if !ownLoopback(e.Address) {
			t.Fatalf("%s listed at %s, want a loopback address of its own", d.UDID(), e.Address)
		}
		c := rsdClientAt(t, e)
		svc, ok := c.Handshake.Service("com.apple.mobile.lockdown.remote.trusted")
		c.Close()
		if !ok {
			t.Fatal("no trusted lockdown in the RSD")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nc, err := net.Dial("tcp", net.JoinHostPort(e.Address, fmt.Sprint(svc.Port)))
		if err != nil {
			t.Fatalf("%s: service port %d at the listed address: %v", d.UDID(), svc.Port, err)
		}
		sc, err := lockdown.ShimClient(ctx, nc, svc.Name, "iosmux-test", nil)
		cancel()
		if err != nil {
			t.Fatalf("%s: lockdown RSDCheckin at the listed address: %v", d.UDID(), err)
		}
		sc.Close()
		// The start-tunnel reply names the same address.
		code, b := get(t, r.url(tunneld.APIPMD3, "/start-tunnel?udid="+d.UDID()))
		if code != 200 || !strings.Contains(string(b), `"address": "`+e.Address+`"`) {
			t.Errorf("start-tunnel = %d %s, want address %s", code, b, e.Address)
		}
		// appium's registry too.
		code, b = get(t, r.url(tunneld.APIAppium, "/remotexpc/tunnels/"+d.UDID()))
		if code != 200 || !strings.Contains(string(b), `"address":"`+e.Address+`"`) {
			t.Errorf("appium = %d %s, want address %s", code, b, e.Address)
		}
	}
	for _, gt := range goiosTunnels(t, r) {
		if a, err := netip.ParseAddr(gt.Address); err != nil || !a.Is6() || !gt.UserspaceTUN {
			t.Errorf("go-ios listing %+v: want the tunnel address and the userspace proxy", gt)
		} else if got := rsdThroughProxy(t, gt); got != gt.UDID {
			t.Errorf("RSD through go-ios's proxy says %q, want %q", got, gt.UDID)
		}
	}

	d := f.Devices()[0]
	before := listing(t, r)[d.UDID()][0]
	if err := d.Unplug(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unplugged device to leave", func() bool { return !listed(t, r, d.UDID()) })
	// Its relay is gone with the tunnel.
	waitFor(t, "the relay to close with the tunnel", func() bool {
		c, err := net.Dial("tcp", net.JoinHostPort(before.Address, fmt.Sprint(before.Port)))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if err := d.Replug(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replugged device", func() bool { return listed(t, r, d.UDID()) })
	if after := listing(t, r)[d.UDID()][0]; after.Address != before.Address || rsdAt(t, after) != d.UDID() {
		t.Errorf("after a replug listed at %+v, before at %+v: want the same address", after, before)
	}
}

// TestUserspaceNoLoopbackAliases: where the system has only 127.0.0.1
// (macOS without lo0 aliases: binding another 127/8 address fails with
// EADDRNOTAVAIL) the tunnel is listed at its tunnel address as before,
// reachable through go-ios's userspace proxy.
func TestUserspaceNoLoopbackAliases(t *testing.T) {
	testkit.CheckLeaks(t)
	f := fleet(t, 1, "")
	var logs testkit.Buffer
	r := daemon(t, f, func(c *tunneld.Config) {
		c.ListenLoopback = func(network, address string) (net.Listener, error) {
			return nil, &net.OpError{Op: "listen", Net: network, Err: syscall.EADDRNOTAVAIL}
		}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	waitFor(t, "1 tunnel", func() bool { return len(listing(t, r)) == 1 })
	for udid, es := range listing(t, r) {
		if a, err := netip.ParseAddr(es[0].Address); err != nil || !a.Is6() {
			t.Errorf("%s listed at %s, want its tunnel address", udid, es[0].Address)
		}
	}
	gt := goiosTunnels(t, r)[0]
	if got := rsdThroughProxy(t, gt); got != gt.UDID {
		t.Errorf("RSD through go-ios's proxy says %q", got)
	}
	if !strings.Contains(logs.String(), "listed at its tunnel address, which only go-ios's userspace proxy reaches") {
		t.Errorf("the log does not say why the tunnel address is listed:\n%s", logs.String())
	}
}
