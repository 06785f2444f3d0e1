//go:build linux

package tunnel

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// Bulk throughput benchmarks (docs/perf.md). Each sub-benchmark moves b.N
// MiB one way over one TCP connection:
//
//	raw        the loopback byte stream itself (RecordConn over TCP), no tunnel
//	kernel     a kernel socket in a netns → kernel TUN → pump → stream →
//	           device pump → device netstack
//	userspace  127.0.0.1 → forwarder → host netstack → pump → stream → device
//
// "up" is host→device, "down" device→host.

// benchTunnel runs up and down through a tunnel whose host side is mk.
func benchTunnel(b *testing.B, mk func(Params) tun.Device, dial func(e *e2e, port uint16) net.Conn) {
	e := startE2E(b, Faults{}, mk)
	sinkLn, err := e.dev.ListenTCP(testkit.SinkPort)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(testkit.Serve(sinkLn, testkit.Sink))
	srcLn, err := e.dev.ListenTCP(testkit.SourcePort)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(testkit.Serve(srcLn, testkit.Source))
	b.Run("up", func(b *testing.B) {
		c := dial(e, testkit.SinkPort)
		defer c.Close()
		testkit.BenchUp(b, c)
	})
	b.Run("down", func(b *testing.B) {
		c := dial(e, testkit.SourcePort)
		defer c.Close()
		testkit.BenchDown(b, c)
	})
}

func BenchmarkBulk(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		// The byte stream alone, in the same shape the tunnel uses.
		pair := func(f func(net.Conn)) net.Conn {
			h, d := testkit.TCPLoopback(b)
			go f(testkit.RecordConn(d))
			return struct {
				net.Conn
				closeWriter
			}{testkit.RecordConn(h), h}
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
	b.Run("kernel", func(b *testing.B) {
		mk, _, ns, _ := kernelHost(b)
		benchTunnel(b, mk, func(e *e2e, port uint16) net.Conn {
			var c net.Conn
			if err := ns.Do(func() (err error) {
				d := net.Dialer{Timeout: 10 * time.Second}
				c, err = d.Dial("tcp6", netip.AddrPortFrom(e.params.ServerAddress, port).String())
				return err
			}); err != nil {
				b.Fatal(err)
			}
			return c
		})
	})
	b.Run("userspace", func(b *testing.B) {
		var hostNS *utun.Netstack
		mk := func(p Params) tun.Device {
			var err error
			hostNS, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
			if err != nil {
				b.Fatal(err)
			}
			return hostNS
		}
		benchTunnel(b, mk, func(e *e2e, port uint16) net.Conn {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			fw := utun.NewForwarder(ln, netip.AddrPortFrom(e.params.ServerAddress, port), hostNS.DialContext, nil)
			b.Cleanup(func() { fw.Close() })
			c, err := net.Dial("tcp", fw.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			return c
		})
	})
}

type closeWriter interface{ CloseWrite() error }
