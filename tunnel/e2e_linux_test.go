package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// kernelHost is the host side on a real kernel TUN inside a network
// namespace the test creates; connections are dialed from inside it.
func kernelHost(t testing.TB) (func(Params) tun.Device, func(e *e2e), *testkit.NetNS, *string) {
	ns := testkit.NewNetNS(t)
	var name string
	mk := func(p Params) tun.Device {
		var dev tun.Device
		if err := ns.Do(func() (err error) {
			dev, err = KernelTUN("")(p)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		name = dev.(*utun.Kernel).InterfaceName()
		return dev
	}
	attach := func(e *e2e) {
		e.dial = func(t *testing.T) net.Conn {
			var c net.Conn
			if err := ns.Do(func() (err error) {
				d := net.Dialer{Timeout: 10 * time.Second}
				c, err = d.DialContext(context.Background(), "tcp6", net.JoinHostPort(e.params.ServerAddress.String(), "58783"))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	return mk, attach, ns, &name
}

func TestKernelBulk(t *testing.T) {
	for _, tt := range []struct {
		name string
		f    Faults
	}{
		{"plain", Faults{}},
		{"dropping device", Faults{DropAbove: 8192}},
		{"merge-sensitive device", Faults{Boundary: BoundaryBreak}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testkit.CheckLeaks(t)
			mk, attach, _, _ := kernelHost(t)
			e := startE2E(t, tt.f, mk)
			attach(e)
			e.bulk(t, int64(*bulkMiB)<<20)
			e.checkFaultsUnused(t)
		})
	}
}

// TestKernelDeviceDies kills the device mid-transfer, abruptly (reset) or
// silently (it stops reading and writing). Either way the tunnel must be
// reported dead within 5 s, the TUN interface must be gone, and nothing may
// leak. The 5 s bound is the acceptance criterion, not a speed measurement:
// the probe's design bound is 3.5 s (TestProbeDeclaresSilentDeviceDead checks
// it exactly under synctest).
func TestKernelDeviceDies(t *testing.T) {
	for _, how := range []string{"reset", "silent"} {
		t.Run(how, func(t *testing.T) {
			testkit.CheckLeaks(t)
			mk, attach, ns, name := kernelHost(t)
			e := startE2E(t, Faults{}, mk)
			attach(e)
			c := e.dial(t)
			bulkDone := make(chan error, 1)
			go func() {
				_, err := testkit.Bulk(c, 1<<40, 1<<40)
				bulkDone <- err
			}()
			// Let the transfer get going.
			for e.pump.Stats().SentBytes < 16<<20 || e.pump.Stats().ReceivedBytes < 16<<20 {
				select {
				case err := <-bulkDone:
					t.Fatalf("transfer ended early: %v", err)
				case <-time.After(10 * time.Millisecond):
				}
			}
			killed := time.Now()
			if how == "reset" {
				e.devConn.Kill()
			} else {
				e.devConn.Freeze()
			}
			select {
			case <-e.pump.Done():
			case <-time.After(30 * time.Second):
				t.Fatal("tunnel not reported dead after 30 s")
			}
			dead := time.Since(killed)
			t.Logf("reported dead after %v: %v", dead.Round(time.Millisecond), e.pump.Err())
			if dead > 5*time.Second {
				t.Errorf("reported dead after %v, want within 5 s", dead)
			}
			if how == "silent" && !errors.Is(e.pump.Err(), ErrDead) {
				t.Errorf("Err = %v, want ErrDead", e.pump.Err())
			}
			if how == "reset" && errors.Is(e.pump.Err(), ErrDead) {
				t.Errorf("Err = %v, want the transport's error", e.pump.Err())
			}
			if err := ns.Do(func() error {
				if _, err := net.InterfaceByName(*name); err == nil {
					return errors.New("TUN interface still exists")
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
			c.Close()
			<-bulkDone
		})
	}
}

// TestKernelPacketTooBig sends a UDP datagram larger than the host→device
// limit from a kernel socket: the pump answers with Packet Too Big, the
// kernel learns the path MTU and fragments, and the device receives the
// whole datagram.
func TestKernelPacketTooBig(t *testing.T) {
	testkit.CheckLeaks(t)
	mk, attach, ns, _ := kernelHost(t)
	e := startE2E(t, Faults{DropAbove: 8192}, mk)
	attach(e)
	srv, err := e.dev.Stack().ListenUDP(netip.AddrPortFrom(e.dev.Address(), 9))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.Dial("udp6", netip.AddrPortFrom(e.params.ServerAddress, 9).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("u"), 12000)
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 65536)
		srv.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, _, err := srv.ReadFrom(buf)
		if err != nil {
			n = -1
		}
		got <- n
	}()
	// The first send is lost to Packet Too Big (or refused with EMSGSIZE
	// once the kernel has the PMTU); resend until one arrives.
	for n := 0; ; n++ {
		c.Write(msg)
		select {
		case n := <-got:
			if n != len(msg) {
				t.Fatalf("device received %d bytes, want %d", n, len(msg))
			}
			st := e.pump.Stats()
			if st.TooBig == 0 {
				t.Fatal("no Packet Too Big was sent")
			}
			if s := deviceSession(t, e.dev, e.params.ClientAddress).Stats(); s.DroppedAbove != 0 {
				t.Fatalf("device dropped %d oversize packets", s.DroppedAbove)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if n > 100 {
			t.Fatal("datagram never arrived")
		}
	}
}

// TestKernelCoalesces hands the pump one batch of 16 consecutive segments
// of a TCP flow from the device and checks that they enter the kernel TUN
// as one packet (wireguard-go's GRO). With receive buffers of MTU size GRO
// had no room to merge into, and every segment entered the kernel on its
// own, checksum verified there. (The simulated device's gVisor sets PSH on
// every segment, which GRO rightly never merges past, so the end-to-end
// tests cannot show this.)
func TestKernelCoalesces(t *testing.T) {
	testkit.CheckLeaks(t)
	ns := testkit.NewNetNS(t)
	host, dev := netip.MustParseAddr("fd00:c0a1::2"), netip.MustParseAddr("fd00:c0a1::1")
	var k *utun.Kernel
	if err := ns.Do(func() (err error) {
		k, err = utun.CreateKernel(utun.Config{Address: netip.PrefixFrom(host, 64), Peer: dev, MTU: StreamMTU})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	name := k.InterfaceName()
	a, b := testkit.PipeSize(1 << 20)
	defer b.Close()
	pump, err := NewPump(PumpConfig{TUN: k, Conn: NewStreamConn(a, StreamMTU), MTU: StreamMTU, Local: host, Peer: dev, Probe: ProbeConfig{Disable: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer pump.Close()
	const segs, size = 16, 2000
	var batch []byte
	for i := range segs {
		pkt := makeTCP(dev, host, 0x10 /* ACK */, nil, bytes.Repeat([]byte{byte(i)}, size))
		// Consecutive sequence numbers, and the checksum again.
		binary.BigEndian.PutUint32(pkt[ipv6HeaderLen+4:], uint32(1000+i*size))
		binary.BigEndian.PutUint16(pkt[ipv6HeaderLen+16:], 0)
		binary.BigEndian.PutUint16(pkt[ipv6HeaderLen+16:], upperChecksum(pkt, protoTCP))
		batch = append(batch, pkt...)
	}
	rx0 := tunRxPackets(t, ns, name)
	if _, err := b.Write(batch); err != nil {
		t.Fatal(err)
	}
	// The pump counts a batch before it writes it to the TUN: wait for
	// both, then a little longer for any straggler.
	deadline := time.Now().Add(10 * time.Second)
	for (pump.Stats().ReceivedPackets < segs || tunRxPackets(t, ns, name) == rx0) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	rx := tunRxPackets(t, ns, name) - rx0
	if got := pump.Stats().ReceivedPackets; got != segs {
		t.Fatalf("pump received %d packets, want %d", got, segs)
	}
	if rx != 1 {
		t.Errorf("%d consecutive segments entered the kernel as %d packets, want 1 (GRO)", segs, rx)
	}
}

// tunRxPackets reads the interface's received-packet counter (what the
// pump wrote into the TUN) from the namespace's /proc/net/dev.
func tunRxPackets(t *testing.T, ns *testkit.NetNS, name string) uint64 {
	t.Helper()
	var rx uint64
	if err := ns.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/dev")
		if err != nil {
			return err
		}
		for l := range strings.Lines(string(b)) {
			ifname, rest, ok := strings.Cut(l, ":")
			if !ok || strings.TrimSpace(ifname) != name {
				continue
			}
			f := strings.Fields(rest)
			if len(f) < 2 {
				break
			}
			rx, err = strconv.ParseUint(f[1], 10, 64)
			return err
		}
		return fmt.Errorf("%s not in /proc/net/dev", name)
	}); err != nil {
		t.Fatal(err)
	}
	return rx
}
