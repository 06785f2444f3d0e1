package tunneld_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/tunneld"
	"golang.zx2c4.com/wireguard/tun"
)

// TestKernelTUNs runs the daemon with kernel TUN interfaces inside a
// network namespace of the test's own (root): each listed RSD answers a
// handshake dialled through the kernel's routing, and a clean stop leaves
// no TUN behind.
func TestKernelTUNs(t *testing.T) {
	testkit.CheckLeaks(t)
	ns := testkit.NewNetNS(t)
	inNS := func(f func() error) {
		t.Helper()
		if err := ns.Do(f); err != nil {
			t.Fatal(err)
		}
	}
	f := fleet(t, 3, "")
	r := daemon(t, f, func(c *tunneld.Config) {
		c.Userspace = false
		c.NewKernelTUN = func(p tunnel.Params) (dev tun.Device, err error) {
			ns.Do(func() error { dev, err = tunnel.KernelTUN("")(p); return nil })
			return dev, err
		}
		c.KernelDial = func(ctx context.Context, network, address string) (conn net.Conn, err error) {
			ns.Do(func() error { var d net.Dialer; conn, err = d.DialContext(ctx, network, address); return nil })
			return conn, err
		}
	})
	waitFor(t, "3 tunnels", func() bool { return len(listing(t, r)) == 3 })
	tunNames := func() []string {
		var names []string
		inNS(func() error {
			ifs, err := net.Interfaces()
			for _, i := range ifs {
				if strings.HasPrefix(i.Name, "tun") {
					names = append(names, i.Name)
				}
			}
			return err
		})
		return names
	}
	if n := tunNames(); len(n) != 3 {
		t.Fatalf("TUN interfaces in the namespace: %v, want 3", n)
	}
	for udid, es := range listing(t, r) {
		e := es[0]
		var got string
		inNS(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(e.Address, itoa(e.Port)))
			if err != nil {
				return err
			}
			c, err := rsd.NewClient(ctx, nc, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			got = c.Handshake.Device().UDID
			return nil
		})
		if got != udid {
			t.Errorf("RSD at [%s]:%d says %q, listed as %s", e.Address, e.Port, got, udid)
		}
	}
	for _, gt := range goiosTunnels(t, r) {
		if gt.UserspaceTUN || gt.UserspaceTUNPort != 0 {
			t.Errorf("kernel tunnel listed as userspace: %+v", gt)
		}
	}
	// Unplugging removes that TUN too.
	d0 := f.Devices()[0]
	d0.Unplug()
	waitFor(t, "unplugged device's TUN to go", func() bool { return len(tunNames()) == 2 })
	r.stop(t)
	if n := tunNames(); len(n) != 0 {
		t.Errorf("TUN interfaces left after the daemon stopped: %v", n)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
