package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

func newTestDevice(t *testing.T, f Faults) *Server {
	t.Helper()
	return newTestDeviceEnd(t, f, false)
}

// newTestDeviceEnd is newTestDevice on the kernel end when kernel is set.
func newTestDeviceEnd(t *testing.T, f Faults, kernel bool) *Server {
	t.Helper()
	dev, err := NewServer(ServerConfig{RSDPort: testRSDPort, Rand: testkit.Rand(2), Faults: f, Kernel: kernel})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

func TestDevicePrefixAndMTU(t *testing.T) {
	testkit.CheckLeaks(t)
	dev := newTestDevice(t, Faults{})
	if p := dev.prefix; p.Bits() != 64 || p.Addr().As16()[0] != 0xfd {
		t.Fatalf("prefix %v, want a ULA /64", p)
	}
	if dev.Address() != dev.prefix.Addr().Next() {
		t.Fatalf("device address %v, want ::1 of %v", dev.Address(), dev.prefix)
	}
	tests := []struct{ ask, want int }{{16000, 16000}, {1420, 1420}, {0, 16000}, {100, 1280}, {65000, 16000}}
	for _, tt := range tests {
		a, b := testkit.Pipe()
		errc := make(chan error, 1)
		var sess *Session
		go func() {
			var err error
			sess, err = dev.StartSession(context.Background(), b)
			errc <- err
		}()
		p, err := ClientHandshake(context.Background(), a, tt.ask)
		if err != nil || <-errc != nil {
			t.Fatalf("ask %d: %v", tt.ask, err)
		}
		if p.MTU != tt.want || sess.Params() != p {
			t.Errorf("ask %d: got MTU %d (session %+v), want %d", tt.ask, p.MTU, sess.Params(), tt.want)
		}
		a.Close() // the session ends on EOF
		<-sess.Done()
	}
}

func TestDeviceRejectsBadRequest(t *testing.T) {
	testkit.CheckLeaks(t)
	dev := newTestDevice(t, Faults{})
	a, b := testkit.Pipe()
	defer a.Close()
	go a.Write(frame(`{"type":"serverHandshakeResponse"}`))
	if _, err := dev.StartSession(context.Background(), b); !errors.Is(err, ErrHandshake) {
		t.Fatalf("err = %v, want ErrHandshake", err)
	}
	// The failed session released its address.
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Fatal("transport left open after a failed handshake")
	}
}

func TestDeviceTwoSessions(t *testing.T) { forEachEnd(t, testDeviceTwoSessions) }

func testDeviceTwoSessions(t *testing.T, kernel bool) {
	testkit.CheckLeaks(t)
	dev := newTestDeviceEnd(t, Faults{}, kernel)
	ln, err := dev.ListenTCP(testRSDPort)
	if err != nil {
		t.Fatal(err)
	}
	wait := serveBulk(t, ln)
	defer wait()
	p1, ns1, params1 := hostOverNetstack(t, dev, PumpConfig{})
	p2, ns2, params2 := hostOverNetstack(t, dev, PumpConfig{})
	if params1.ClientAddress == params2.ClientAddress {
		t.Fatalf("both sessions got %v", params1.ClientAddress)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range []interface {
		DialTCP(context.Context, netip.AddrPort) (net.Conn, error)
	}{dialer{ns1}, dialer{ns2}} {
		c, err := ns.DialTCP(ctx, netip.AddrPortFrom(dev.Address(), testRSDPort))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testkit.Bulk(c, 1<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	p1.Close()
	p2.Close()
}

// dialer narrows a netstack to a net.Conn dialer.
type dialer struct {
	ns interface {
		DialContext(context.Context, string, string) (net.Conn, error)
	}
}

func (d dialer) DialTCP(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	return d.ns.DialContext(ctx, "tcp", ap.String())
}

func TestDeviceDropsOversizeFromCarelessHost(t *testing.T) {
	forEachEnd(t, testDeviceDropsOversizeFromCarelessHost)
}

func testDeviceDropsOversizeFromCarelessHost(t *testing.T, kernel bool) {
	// Negative control for the drop fault: a host that sends 16000-byte
	// packets loses them, so the fault is real and our clamp is what keeps
	// the default host safe (TestPumpInMemoryBothRoles). The faults act on
	// the transport, so they hold on the kernel end too.
	testkit.CheckLeaks(t)
	dev := newTestDeviceEnd(t, Faults{DropAbove: 8192}, kernel)
	ln, err := dev.ListenTCP(testRSDPort)
	if err != nil {
		t.Fatal(err)
	}
	wait := serveBulk(t, ln)
	defer wait()
	p, ns, params := hostOverNetstack(t, dev, PumpConfig{MaxSendPacket: 16000, NoClamp: true})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := ns.DialTCP(ctx, netip.AddrPortFrom(params.ServerAddress, testRSDPort))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = testkit.Bulk(c, 4<<20, 0)
	c.Close()
	if err == nil {
		t.Fatal("upload through a dropping device succeeded without clamping")
	}
	sess := deviceSession(t, dev, params.ClientAddress)
	if sess.Stats().DroppedAbove == 0 {
		t.Fatal("device dropped nothing")
	}
}

func deviceSession(t *testing.T, dev *Server, client netip.Addr) *Session {
	t.Helper()
	dev.mu.Lock()
	defer dev.mu.Unlock()
	s := dev.sessions[client]
	if s == nil {
		t.Fatalf("no device session for %v", client)
	}
	return s
}

func TestDeviceBoundaryModes(t *testing.T) {
	for _, mode := range []BoundaryMode{BoundaryDrop, BoundaryBreak} {
		t.Run(mode.String(), func(t *testing.T) {
			testkit.CheckLeaks(t)
			dev := newTestDevice(t, Faults{Boundary: mode})
			ln, err := dev.ListenTCP(testRSDPort)
			if err != nil {
				t.Fatal(err)
			}
			wait := serveBulk(t, ln)
			defer wait()
			// Our host writes one packet per write: the pipe keeps write
			// boundaries like TLS records, so the device never sees a merge.
			p, ns, params := hostOverNetstack(t, dev, PumpConfig{})
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := ns.DialTCP(ctx, netip.AddrPortFrom(params.ServerAddress, testRSDPort))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := testkit.Bulk(c, 8<<20, 8<<20); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if v := deviceSession(t, dev, params.ClientAddress).Stats().BoundaryViolations; v != 0 {
				t.Fatalf("%d boundary violations", v)
			}
		})
	}
}

func TestDeviceBreaksOnMergedPackets(t *testing.T) {
	// Negative control: two packets in one write end a BoundaryBreak session.
	testkit.CheckLeaks(t)
	dev := newTestDevice(t, Faults{Boundary: BoundaryBreak})
	a, b := testkit.Pipe()
	defer a.Close()
	errc := make(chan error, 1)
	var sess *Session
	go func() {
		var err error
		sess, err = dev.StartSession(context.Background(), b)
		errc <- err
	}()
	params, err := ClientHandshake(context.Background(), a, StreamMTU)
	if err != nil || <-errc != nil {
		t.Fatal(err)
	}
	one := appendEcho(nil, icmpv6EchoRequest, params.ClientAddress, params.ServerAddress, 1, 1, nil)
	// A single packet per write is fine (and answered)...
	a.Write(one)
	reply := make([]byte, 100)
	if n, err := a.Read(reply); err != nil || !wellFormed(reply[:n]) {
		t.Fatalf("echo reply: %x, %v", reply[:n], err)
	}
	// ...two in one write break the session.
	a.Write(append(append([]byte(nil), one...), one...))
	<-sess.Done()
	if !errors.Is(sess.Err(), ErrMergedPackets) {
		t.Fatalf("session ended with %v, want ErrMergedPackets", sess.Err())
	}
	if _, err := io.ReadAll(a); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("transport after break: %v", err)
	}
}

func TestFaultConnDropAfter(t *testing.T) {
	small := appendEcho(nil, icmpv6EchoRequest, hostAddr, devAddr, 1, 1, nil)
	big := makeTCP(hostAddr, devAddr, 0x10, nil, make([]byte, 9000))
	stream := bytes.Join([][]byte{big, small, big, small}, nil)
	var fc faultCounters
	c := newFaultConn(NewStreamConn(rwc{bytes.NewReader(stream), io.Discard}, StreamMTU),
		Faults{DropAbove: 8192, DropAfter: int64(len(big))}, &fc)
	bufs, sizes := makeBufs(8, StreamMTU)
	var got []int
	for {
		n, err := c.ReadPackets(bufs, sizes, 0)
		got = append(got, sizes[:n]...)
		if err != nil {
			break
		}
	}
	// The first big packet passes (traffic not yet sustained), the second
	// is dropped.
	want := []int{len(big), len(small), len(small)}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || fc.dropped.Load() != 1 {
		t.Fatalf("got sizes %v (dropped %d), want %v (1)", got, fc.dropped.Load(), want)
	}
}
