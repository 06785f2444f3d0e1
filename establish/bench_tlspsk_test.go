//go:build linux

package establish

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/tunnel"
	"golang.zx2c4.com/wireguard/tun"
)

// BenchmarkTLSPSK is the tunnel's throughput over TLS-PSK, P3 established
// end to end against the fixture device (docs/perf.md), next to the raw
// TLS-PSK stream of the same suite in the same run:
//
//	raw        tlspsk over loopback TCP, 1 MiB writes, no tunnel
//	kernel     kernel socket in a netns → kernel TUN → pump → TLS-PSK →
//	           device pump → device netstack
//	userspace  127.0.0.1 → forwarder → host netstack → pump → TLS-PSK → …
//
// up is host→device, down device→host. Each runs once per suite of
// benchSuites (the first level of the name: gcm, cbc), the device offering
// only that one.
func BenchmarkTLSPSK(b *testing.B) {
	for _, s := range benchSuites {
		b.Run(s.name, func(b *testing.B) { benchTLSPSK(b, s.id) })
	}
}

// benchSuites are the suites the TLS-PSK benchmarks run with: AES-256-GCM
// (0x00A9), what the host's default offer gets from the simulated device,
// and AES-256-CBC-SHA384 (0x00AF), what a device preferring CBC picks
// (tlspsk.md §3.3).
var benchSuites = []struct {
	name string
	id   uint16
}{
	{"gcm", tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384},
	{"cbc", tlspsk.TLS_PSK_WITH_AES_256_CBC_SHA384},
}

func benchTLSPSK(b *testing.B, suite uint16) {
	b.Run("raw", func(b *testing.B) {
		psk := make([]byte, 32)
		pair := func(f func(net.Conn)) net.Conn {
			h, d := testkit.TCPLoopback(b)
			hc := tlspsk.Client(h, &tlspsk.Config{PSK: psk})
			dc := tlspsk.Server(d, &tlspsk.Config{PSK: psk, CipherSuites: []uint16{suite}, DisableExtendedMasterSecret: true})
			go func() {
				if dc.Handshake() == nil {
					f(dc)
				}
				dc.Close()
			}()
			if err := hc.Handshake(); err != nil {
				b.Fatal(err)
			}
			return hc
		}
		b.Run("up", func(b *testing.B) {
			c := pair(testkit.Sink)
			defer c.Close()
			testkit.BenchUp(b, c)
		})
		b.Run("down", func(b *testing.B) {
			c := pair(testkit.Source)
			defer c.Close()
			testkit.BenchDown(b, c)
		})
	})
	for _, side := range []struct {
		name string
		mk   func(testing.TB) hostSide
	}{{"kernel", kernelSide}, {"userspace", userspaceSide}} {
		b.Run(side.name, func(b *testing.B) {
			f := newFixture(b, fixtureConfig{suites: []uint16{suite}})
			for port, serve := range map[uint16]func(net.Conn){testkit.SinkPort: testkit.Sink, testkit.SourcePort: testkit.Source} {
				ln, err := f.dev.ListenTCP(port)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(testkit.Serve(ln, serve))
			}
			hs := side.mk(b)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			opt := f.options(func(p tunnel.Params) tun.Device { return hs.newTUN(p) }, TCP)
			tn, err := remotePairing(ctx, f.rpAddr, opt)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { tn.Close() })
			b.Run("up", func(b *testing.B) {
				c := hs.dial(b, tn, testkit.SinkPort)
				defer c.Close()
				testkit.BenchUp(b, c)
			})
			b.Run("down", func(b *testing.B) {
				c := hs.dial(b, tn, testkit.SourcePort)
				defer c.Close()
				testkit.BenchDown(b, c)
			})
		})
	}
}
