//go:build linux

package tunnel

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
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

const benchChunk = 1 << 20

// benchPorts on the device: sink reads to EOF then answers one byte; source
// reads an 8-byte length and sends that many bytes.
const (
	benchSinkPort   = 9
	benchSourcePort = 19
)

func sink(c net.Conn) {
	defer c.Close()
	io.Copy(io.Discard, c)
	c.Write([]byte{1})
}

func source(c net.Conn) {
	defer c.Close()
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	buf := make([]byte, benchChunk)
	for left := int64(binary.BigEndian.Uint64(hdr[:])); left > 0; left -= benchChunk {
		if _, err := c.Write(buf[:min(left, benchChunk)]); err != nil {
			return
		}
	}
}

// serveFunc accepts on ln and runs f per conn; the returned func stops it.
func serveFunc(ln net.Listener, f func(net.Conn)) func() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f(c) }()
		}
	}()
	return func() { ln.Close(); wg.Wait() }
}

// processCPU is the process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ns/B: process CPU (both ends, kernel included) per
// byte moved, steadier than MB/s on a shared machine.
func reportCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(processCPU()-since)/float64(int64(b.N)*benchChunk), "cpu-ns/B")
}

func benchUp(b *testing.B, c net.Conn) {
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	cpu := processCPU()
	defer func() { reportCPU(b, cpu) }()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

func benchDown(b *testing.B, c net.Conn) {
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	cpu := processCPU()
	defer func() { reportCPU(b, cpu) }()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(b.N)*benchChunk)
	c.Write(hdr[:])
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, buf)
	if err != nil || n != int64(b.N)*benchChunk {
		b.Fatalf("read %d bytes, %v", n, err)
	}
	b.StopTimer()
}

// benchTunnel runs up and down through a tunnel whose host side is mk.
func benchTunnel(b *testing.B, mk func(Params) tun.Device, dial func(e *e2e, port uint16) net.Conn) {
	e := startE2E(b, Faults{}, mk)
	sinkLn, err := e.dev.ListenTCP(benchSinkPort)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(serveFunc(sinkLn, sink))
	srcLn, err := e.dev.ListenTCP(benchSourcePort)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(serveFunc(srcLn, source))
	b.Run("up", func(b *testing.B) {
		c := dial(e, benchSinkPort)
		defer c.Close()
		benchUp(b, c)
	})
	b.Run("down", func(b *testing.B) {
		c := dial(e, benchSourcePort)
		defer c.Close()
		benchDown(b, c)
	})
}

func BenchmarkBulk(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		// The byte stream alone, in the same shape the tunnel uses.
		pair := func(f func(net.Conn)) net.Conn {
			h, d := tcpLoopback(b)
			go f(testkit.RecordConn(d))
			return struct {
				net.Conn
				closeWriter
			}{testkit.RecordConn(h), h}
		}
		b.Run("up", func(b *testing.B) {
			c := pair(sink)
			defer c.Close()
			benchUp(b, c)
		})
		b.Run("down", func(b *testing.B) {
			c := pair(source)
			defer c.Close()
			benchDown(b, c)
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
