package backend

import (
	"context"
	"net"
	"testing"

	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/sim/simtest"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

func init() {
	tunnelModes = append(tunnelModes, struct {
		name string
		open func(testing.TB, *sim.Fleet, *sim.Device) benchTunnel
	}{"kernel", openKernelTunnel})
}

// openKernelTunnel ends the host's side of a tunnel to d in a kernel TUN
// inside a network namespace of its own (so the benchmark touches no real
// interface; it needs root). Every dial through it, the backend's and the
// direct one, is a kernel TCP socket made in that namespace; the backend's
// loopback listeners stay in the test's namespace, so a forwarded
// connection is two *net.TCPConn in different namespaces, as in tunneld's
// kernel mode (where they share one).
func openKernelTunnel(t testing.TB, f *sim.Fleet, d *sim.Device) benchTunnel {
	t.Helper()
	ns := testkit.NewNetNS(t)
	tn := simtest.OpenTunnelWith(t, simtest.Usbmux(f), d.UDID(), establish.Options{NewTUN: func(p tunnel.Params) (tun.Device, error) {
		var dev tun.Device
		err := ns.Do(func() error {
			k, err := utun.CreateKernel(utun.Config{Address: p.ClientPrefix(), Peer: p.ServerAddress, MTU: p.MTU})
			if err != nil {
				return err
			}
			dev = k
			return nil
		})
		return dev, err
	}}, d)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return benchTunnel{
		link: DeviceTunnel{RSD: tn.RSD(), Dial: dial, Done: tn.Done()},
		direct: func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		},
	}
}
