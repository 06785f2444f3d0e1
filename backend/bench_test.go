package backend

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/iosmux/iosmux/sim"
)

// BenchmarkForwarder moves bytes from the simulated iPhone's byte source
// (download) and to its sink (upload) over one CoreDeviceProxy tunnel,
// alternating in every iteration between straight through the tunnel and
// through the backend's forwarder on loopback, so both see the same machine
// load (docs/perf.md, backend section; goal: forwarder ≥ 0.9× direct). It
// reports MB/s and process CPU per byte of each path and their ratio; the
// simulated device runs in the same process, so CPU counts both ends of the
// tunnel.
//
// The host's end of the tunnel is either a userspace stack ("direct" is an
// in-process dial into it, which only iosmux itself can do) or, on Linux, a
// kernel TUN in a network namespace the benchmark creates ("direct" is a
// kernel socket to the device's address through the TUN, what a client of
// tunneld's kernel mode does; the forwarder dials the same way).
//
//	go test -run '^$' -bench Forwarder -benchtime 10x -count 5 ./backend
func BenchmarkForwarder(b *testing.B) {
	for _, mode := range tunnelModes {
		b.Run(mode.name, func(b *testing.B) {
			for _, link := range []struct {
				name    string
				realism sim.Realism
				size    int
			}{
				// No link limit: everything (device, tunnel, both
				// stacks, client) competes for the CPU, so the
				// forwarder's extra loopback hop shows in full.
				{"unlimited", sim.Realism{}, 64 << 20},
				// A USB 2 link (sim.USB2's rate), what a real iPhone's
				// tunnel runs over.
				{"usb2", sim.Realism{LinkRate: sim.USB2.LinkRate}, 16 << 20},
			} {
				b.Run(link.name, func(b *testing.B) { benchmarkForwarder(b, mode.open, link.realism, link.size) })
			}
		})
	}
}

// benchTunnel is one way of ending the host's side of the tunnel: the Link
// the backend uses, and a dial of a device address straight through it.
type benchTunnel struct {
	link   DeviceTunnel
	direct func(ctx context.Context, addr string) (net.Conn, error)
}

// tunnelModes are the host sides BenchmarkForwarder measures; a kernel TUN
// is added on Linux (bench_linux_test.go).
var tunnelModes = []struct {
	name string
	open func(testing.TB, *sim.Fleet, *sim.Device) benchTunnel
}{{"userspace", func(t testing.TB, f *sim.Fleet, d *sim.Device) benchTunnel {
	h := openTunnel(t, f, d)
	return benchTunnel{link: h.link(), direct: func(ctx context.Context, addr string) (net.Conn, error) {
		return h.ns.DialContext(ctx, "tcp", addr)
	}}
}}}

func benchmarkForwarder(b *testing.B, open func(testing.TB, *sim.Fleet, *sim.Device) benchTunnel, realism sim.Realism, size int) {
	f, d := simDeviceRealism(b, "18.2", realism)
	h := open(b, f, d)
	bk := newBackend(b, func(c *Config) { c.Logger = nil })
	if err := bk.Attach(testCtx(b), h.link); err != nil {
		b.Fatal(err)
	}
	direct := func(name string) func() (net.Conn, error) {
		addr := netip.AddrPortFrom(h.link.RSD.Addr(), d.TrustedService(name)).String()
		return func() (net.Conn, error) { return h.direct(testCtx(b), addr) }
	}
	forwarder := func(name string) func() (net.Conn, error) {
		s, ok := bk.Handshake().Service(name)
		if !ok {
			b.Fatalf("no %s", name)
		}
		addr := net.JoinHostPort(bk.Addr().Addr().String(), strconv.Itoa(int(s.Port)))
		return func() (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	for _, dir := range []struct {
		name    string
		service string
		move    func(b *testing.B, c net.Conn)
	}{{"download", sim.SourceService, download(size)}, {"upload", sim.SinkService, upload(size)}} {
		b.Run(dir.name, func(b *testing.B) {
			paths := []func() (net.Conn, error){direct(dir.service), forwarder(dir.service)}
			var wall, cpu [2]time.Duration
			i := 0
			for b.Loop() {
				for k := range 2 {
					p := (i + k) % 2 // alternate which path goes first
					c, err := paths[p]()
					if err != nil {
						b.Fatal(err)
					}
					t0, c0 := time.Now(), processCPU()
					dir.move(b, c)
					wall[p] += time.Since(t0)
					cpu[p] += processCPU() - c0
				}
				i++
			}
			n := float64(b.N) * float64(size)
			mbs := func(p int) float64 { return n / 1e6 / wall[p].Seconds() }
			b.ReportMetric(mbs(0), "direct-MB/s")
			b.ReportMetric(mbs(1), "fwd-MB/s")
			b.ReportMetric(mbs(1)/mbs(0), "fwd/direct")
			b.ReportMetric(float64(cpu[0].Nanoseconds())/n, "direct-cpu-ns/B")
			b.ReportMetric(float64(cpu[1].Nanoseconds())/n, "fwd-cpu-ns/B")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func download(size int) func(*testing.B, net.Conn) {
	buf := make([]byte, 256<<10)
	return func(b *testing.B, c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		var req [8]byte
		binary.BigEndian.PutUint64(req[:], uint64(size))
		c.Write(req[:])
		n, err := io.CopyBuffer(io.Discard, c, buf)
		if err != nil || n != int64(size) {
			b.Fatalf("downloaded %d bytes: %v", n, err)
		}
	}
}

func upload(size int) func(*testing.B, net.Conn) {
	chunk := make([]byte, 256<<10)
	return func(b *testing.B, c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		c.(interface{ CloseWrite() error }).CloseWrite()
		reply, err := io.ReadAll(c)
		if err != nil || len(reply) != 40 || binary.BigEndian.Uint64(reply) != uint64(size) {
			b.Fatalf("sink reply %x: %v", reply, err)
		}
	}
}
