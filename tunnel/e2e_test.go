package tunnel

import (
	"context"
	"flag"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// bulkMiB sizes the end-to-end transfers (each way). Run with
// -bulk-mib=1024 for the 1 GiB acceptance transfer.
var bulkMiB = flag.Int("bulk-mib", 16, "MiB moved each way by the end-to-end tunnel tests (1024 for the 1 GiB acceptance run)")

// e2e is one host↔device tunnel over loopback TCP, the transport standing
// in for TLS: testkit.RecordConn keeps write boundaries the way TLS records
// do, so a read-boundary-sensitive device sees exactly what a real one would.
type e2e struct {
	dev     *Server
	params  Params
	pump    *Pump
	devConn *testkit.FreezeConn // the device's end of the transport
	dial    func(t *testing.T) net.Conn
}

// startE2E brings up a device with faults f and a bulk service, and the
// host side with hostTUN (given the handshake's parameters) as its TUN.
func startE2E(t testing.TB, f Faults, hostTUN func(Params) tun.Device) *e2e {
	t.Helper()
	dev, err := NewServer(ServerConfig{RSDPort: testRSDPort, Rand: testkit.Rand(3), Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	ln, err := dev.ListenTCP(testRSDPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testkit.ServeBulkListener(ln, nil))

	hostRaw, devRaw := testkit.TCPLoopback(t)
	devConn := testkit.NewFreezeConn(testkit.RecordConn(devRaw), devRaw)
	hostConn := testkit.RecordConn(hostRaw)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sessc := make(chan error, 1)
	go func() {
		_, err := dev.StartSession(ctx, devConn)
		sessc <- err
	}()
	pump, params, err := StartClient(ctx, hostConn, ClientConfig{NewTUN: func(p Params) (tun.Device, error) { return hostTUN(p), nil }})
	if err != nil {
		t.Fatalf("host: %v", err)
	}
	if err := <-sessc; err != nil {
		t.Fatalf("device session: %v", err)
	}
	t.Cleanup(func() { pump.Close() })
	return &e2e{dev: dev, params: params, pump: pump, devConn: devConn}
}

// bulk moves size bytes each way over a fresh connection and reports MB/s.
func (e *e2e) bulk(t *testing.T, size int64) {
	t.Helper()
	c := e.dial(t)
	defer c.Close()
	start := time.Now()
	if _, err := testkit.Bulk(c, size, size); err != nil {
		t.Fatalf("bulk: %v (pump %+v)", err, e.pump.Stats())
	}
	d := time.Since(start)
	t.Logf("%d MiB each way in %v: %.0f MB/s total", size>>20, d.Round(time.Millisecond), float64(2*size)/d.Seconds()/1e6)
}

// checkFaultsUnused asserts the device's faults never had to act: our host
// side stayed within what the device forwards.
func (e *e2e) checkFaultsUnused(t *testing.T) {
	t.Helper()
	s := deviceSession(t, e.dev, e.params.ClientAddress).Stats()
	if s.DroppedAbove != 0 || s.BoundaryViolations != 0 {
		t.Fatalf("device dropped %d oversize packets and saw %d merged reads", s.DroppedAbove, s.BoundaryViolations)
	}
	if st := e.pump.Stats(); st.TooBig != 0 {
		t.Fatalf("host sent %d Packet Too Big", st.TooBig)
	}
}

// userspaceHost is the host side without a kernel TUN: a netstack, and a
// forwarder on 127.0.0.1 to the device's bulk port.
func userspaceHost(t testing.TB) (func(Params) tun.Device, func(e *e2e)) {
	var ns *utun.Netstack
	mk := func(p Params) tun.Device {
		var err error
		ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	attach := func(e *e2e) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fw := utun.NewForwarder(ln, netip.AddrPortFrom(e.params.ServerAddress, testRSDPort), ns.DialContext, nil)
		t.Cleanup(func() { fw.Close() })
		e.dial = func(t *testing.T) net.Conn {
			c, err := net.Dial("tcp", fw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	return mk, attach
}

func TestUserspaceBulk(t *testing.T) {
	for _, tt := range []struct {
		name string
		f    Faults
	}{
		{"plain", Faults{}},
		{"dropping and merge-sensitive device", Faults{DropAbove: 8192, Boundary: BoundaryBreak}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testkit.CheckLeaks(t)
			mk, attach := userspaceHost(t)
			e := startE2E(t, tt.f, mk)
			attach(e)
			e.bulk(t, int64(*bulkMiB)<<20)
			e.checkFaultsUnused(t)
		})
	}
}
