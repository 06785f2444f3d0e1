// Package simtest is the test fixture "a simulated iPhone, paired, tunnel
// up", importable by any package's tests (as wireguard-go's tun/tuntest is):
// a fleet closed at cleanup, and iosmux's own host side of a CoreDeviceProxy
// tunnel to one of its devices, brought up by establish.Establish (lockdown
// pairing first when usbmuxd holds no record) and ending in a userspace
// network stack.
package simtest

import (
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// DeviceEnd is the device end of every fleet StartFleet starts whose
// config leaves it unset: -sim-device-end=kernel runs a package's tests and
// benchmarks against the kernel end (Linux, root), so a benchmark through
// the simulator measures the host side.
var DeviceEnd = flag.String("sim-device-end", string(sim.DeviceEndNetstack), "device end of the simulated iPhones simtest starts: netstack or kernel (Linux, root)")

// Timeout bounds each step the fixture waits for (the device plugged in,
// pairing, the tunnel).
const Timeout = 30 * time.Second

// StartFleet starts a fleet and closes it at cleanup, failing the test if
// closing fails. An empty cfg.SocketPath gets a short one of its own (UNIX
// socket paths are limited to about 100 bytes, t.TempDir's can be longer).
// An empty cfg.DeviceEnd is -sim-device-end's.
func StartFleet(t testing.TB, cfg sim.FleetConfig) *sim.Fleet {
	t.Helper()
	if cfg.DeviceEnd == "" {
		cfg.DeviceEnd = sim.DeviceEnd(*DeviceEnd)
	}
	if cfg.SocketPath == "" && cfg.StateDir == "" {
		dir, err := os.MkdirTemp("", "simtest-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		cfg.SocketPath = filepath.Join(dir, "usbmuxd")
	}
	f, err := sim.StartFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("closing the fleet: %v", err)
		}
	})
	return f
}

// Tunnel is iosmux's host side of a tunnel to a simulated device.
type Tunnel struct {
	*establish.Tunnel
	// Net is the userspace stack the tunnel ends in; nil when the caller's
	// Options.NewTUN made another device.
	Net *utun.Netstack
}

// DialContext opens a connection through the tunnel's userspace stack.
func (t *Tunnel) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return t.Net.DialContext(ctx, network, address)
}

// OpenTunnel opens a CoreDeviceProxy tunnel to d through f's usbmuxd,
// waiting for d to be plugged in, and closes it at cleanup.
func OpenTunnel(t testing.TB, f *sim.Fleet, d *sim.Device) *Tunnel {
	t.Helper()
	return OpenTunnelWith(t, Usbmux(f), d.UDID(), establish.Options{}, d)
}

// Usbmux is a client of f's usbmuxd.
func Usbmux(f *sim.Fleet) *usbmux.Client {
	return usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})
}

// OpenTunnelWith opens a CoreDeviceProxy tunnel to the device udid through
// mux, with opt (Usbmux is set here; a nil NewTUN means a userspace stack,
// Tunnel.Net). d, if not nil, is waited for when usbmuxd does not list it
// yet. The tunnel closes at cleanup.
func OpenTunnelWith(t testing.TB, mux *usbmux.Client, udid string, opt establish.Options, d *sim.Device) *Tunnel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var dev usbmux.DeviceEntry
	for {
		list, err := mux.ListDevices(ctx)
		if err != nil {
			t.Fatalf("simtest: usbmuxd at %s: %v", mux.Addr(), err)
		}
		if e, ok := usbmux.FindDevice(list, udid); ok {
			dev = e
			break
		}
		if d == nil {
			t.Fatalf("simtest: usbmuxd lists no %s (%d devices)", udid, len(list))
		}
		if err := d.WaitState(ctx, sim.StatePlugged); err != nil {
			t.Fatalf("simtest: %s not plugged in: %v", udid, err)
		}
	}
	tn := &Tunnel{}
	opt.Usbmux = mux
	if opt.Pair.HostName == "" {
		opt.Pair.HostName = "simtest"
	}
	if opt.NewTUN == nil {
		opt.NewTUN = func(p tunnel.Params) (tun.Device, error) {
			var err error
			tn.Net, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
			return tn.Net, err
		}
	}
	var err error
	tn.Tunnel, err = establish.Establish(ctx, discovery.UsbmuxSighting(dev), opt)
	if err != nil {
		t.Fatalf("simtest: tunnel to %s: %v", udid, err)
	}
	t.Cleanup(func() { tn.Close() })
	return tn
}
