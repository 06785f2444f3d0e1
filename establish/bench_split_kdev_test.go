//go:build linux

package establish

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// The "cheap device" of BenchmarkTLSPSKSplit: instead of the fixture
// device's gVisor stack, the device end of each TLS-PSK connection is our
// own Pump on a kernel TUN in a network namespace of the child's, and the
// sink and source are kernel sockets there. It has no pairing layer: the
// host dials TLS-PSK directly and runs StartClient (the CDTunnel client and
// the same pump, TUN and TLS-PSK code as every byte-stream path). What it
// measures is the host's data plane against a device whose TCP stack costs
// about what the host's does, on its own CPU.

// kdevPrefix is the cheap device's link prefix; it is ::1, the host ::2.
var kdevPrefix = netip.MustParsePrefix("fd17:d3e0:5a4b::/64")

// startKernelDevice listens for TLS-PSK on loopback in the child and
// returns the address. Each connection gets its own namespace and TUN.
func startKernelDevice(t *testing.T, suite uint16) string {
	server := kdevPrefix.Addr().Next()
	client := server.Next()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testkit.Serve(ln, func(nc net.Conn) {
		tc := tlspsk.Server(nc, &tlspsk.Config{PSK: make([]byte, 32), CipherSuites: []uint16{suite}, DisableExtendedMasterSecret: true})
		defer tc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tc.Handshake(); err != nil {
			t.Logf("kdev: TLS-PSK: %v", err)
			return
		}
		_, params, err := tunnel.ServerHandshake(ctx, tc, func(req tunnel.Request) (tunnel.Params, error) {
			mtu := tunnel.StreamMTU
			if req.MTU != 0 {
				mtu = max(min(mtu, req.MTU), tunnel.MinMTU)
			}
			return tunnel.Params{ClientAddress: client, PrefixLen: kdevPrefix.Bits(), MTU: mtu, ServerAddress: server, ServerRSDPort: testRSDPort}, nil
		})
		if err != nil {
			t.Logf("kdev: CDTunnel: %v", err)
			return
		}
		ns := testkit.NewNetNS(t)
		var dev *utun.Kernel
		var lns []net.Listener
		if err := ns.Do(func() error {
			k, err := utun.CreateKernel(utun.Config{Address: netip.PrefixFrom(server, kdevPrefix.Bits()), Peer: client, MTU: params.MTU})
			if err != nil {
				return err
			}
			dev = k
			for _, port := range []uint16{testkit.SinkPort, testkit.SourcePort} {
				l, err := net.Listen("tcp6", netip.AddrPortFrom(server, port).String())
				if err != nil {
					return err
				}
				lns = append(lns, l)
			}
			return nil
		}); err != nil {
			t.Logf("kdev: TUN: %v", err)
			return
		}
		stopSink := testkit.Serve(lns[0], testkit.Sink)
		defer stopSink()
		stopSource := testkit.Serve(lns[1], testkit.Source)
		defer stopSource()
		pump, err := tunnel.NewPump(tunnel.PumpConfig{
			TUN:     dev,
			Conn:    tunnel.NewStreamConn(tc, params.MTU),
			MTU:     params.MTU,
			Local:   server,
			Peer:    client,
			NoClamp: true,
			Probe:   tunnel.ProbeConfig{Disable: true},
		})
		if err != nil {
			t.Logf("kdev: pump: %v", err)
			return
		}
		<-pump.Done()
		pump.Close()
	}))
	return ln.Addr().String()
}

// startKernelDeviceHost is the host end against the cheap device: TLS-PSK,
// then StartClient with hs's TUN. The returned Tunnel carries only Params and
// the pump (for hostSide.dial and Stats).
func startKernelDeviceHost(b *testing.B, addr string, hs hostSide, maxSend int) *Tunnel {
	nc, err := splitDial(context.Background(), "tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	tc := tlspsk.Client(nc, &tlspsk.Config{PSK: make([]byte, 32)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pump, params, err := tunnel.StartClient(ctx, tc, tunnel.ClientConfig{
		NewTUN:        func(p tunnel.Params) (tun.Device, error) { return hs.newTUN(p), nil },
		MaxSendPacket: maxSend,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pump.Close() })
	return &Tunnel{Params: params, pump: pump}
}
