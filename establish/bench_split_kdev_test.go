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
	"golang.zx2c4.com/wireguard/tun"
)

// The "cheap device" of BenchmarkTLSPSKSplit: instead of the fixture
// device's gVisor stack, the device end is tunnel.Server's kernel end (a
// kernel TUN per tunnel in a network namespace of the child's, the sink and
// source on kernel sockets there), as 'iosmux sim --device-end kernel'
// runs it. It has no pairing layer: the host dials TLS-PSK directly and runs
// StartClient (the CDTunnel client and the same pump, TUN and TLS-PSK code
// as every byte-stream path). What it measures is the host's data plane
// against a device whose TCP stack costs about what the host's does, on its
// own CPU.

// kdevPrefix is the cheap device's link prefix; it is ::1, the host ::2.
var kdevPrefix = netip.MustParsePrefix("fd17:d3e0:5a4b::/64")

// startKernelDevice listens for TLS-PSK on loopback in the child and
// returns the address; each connection carries a tunnel to the kernel end.
func startKernelDevice(t *testing.T, suite uint16) string {
	dev, err := tunnel.NewServer(tunnel.ServerConfig{Prefix: kdevPrefix, RSDPort: testRSDPort, Kernel: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	for port, serve := range map[uint16]func(net.Conn){testkit.SinkPort: testkit.Sink, testkit.SourcePort: testkit.Source} {
		ln, err := dev.ListenTCP(port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(testkit.Serve(ln, serve))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testkit.Serve(ln, func(nc net.Conn) {
		tc := tlspsk.Server(nc, &tlspsk.Config{PSK: make([]byte, 32), CipherSuites: []uint16{suite}, DisableExtendedMasterSecret: true})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tc.HandshakeContext(ctx); err != nil {
			tc.Close()
			t.Logf("kdev: TLS-PSK: %v", err)
			return
		}
		s, err := dev.StartSession(ctx, tc)
		if err != nil {
			t.Logf("kdev: tunnel: %v", err)
			return
		}
		<-s.Done()
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
