//go:build linux

package tunnel

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// TestKernelEndSessions is TestDeviceTwoSessions on the kernel device end:
// two hosts each get their own address and TUN, the device's listener (a
// kernel socket in the end's namespace) answers both, bulk both ways, and
// a session's TUN goes when the session does, the namespace when the
// server closes (goroutines and descriptors checked).
func TestKernelEndSessions(t *testing.T) {
	testkit.CheckLeaks(t)
	dev, err := NewServer(ServerConfig{RSDPort: testRSDPort, Rand: testkit.Rand(3), Kernel: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Stack() != nil {
		t.Fatal("kernel end has a userspace stack")
	}
	ln, err := dev.ListenTCP(testRSDPort)
	if err != nil {
		t.Fatal(err)
	}
	if got := ln.Addr().String(); got != netip.AddrPortFrom(dev.Address(), testRSDPort).String() {
		t.Fatalf("listening on %s, want the device address", got)
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
	for _, ns := range []dialer{{ns1}, {ns2}} {
		c, err := ns.DialTCP(ctx, netip.AddrPortFrom(dev.Address(), testRSDPort))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testkit.Bulk(c, 4<<20, 4<<20); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// Each session has a TUN of its own in the namespace; closing the host
	// end takes it away.
	if n := kernelTUNs(t, dev); n != 2 {
		t.Fatalf("%d TUNs in the device's namespace, want 2", n)
	}
	p1.Close()
	deadline := time.Now().Add(10 * time.Second)
	for kernelTUNs(t, dev) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d TUNs after one host left, want 1", kernelTUNs(t, dev))
		}
		time.Sleep(10 * time.Millisecond)
	}
	p2.Close()
}

// kernelTUNs counts the tun interfaces in the kernel end's namespace.
func kernelTUNs(t *testing.T, dev *Server) int {
	t.Helper()
	n := 0
	err := dev.kernel.ns.Do(func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, e := range ifs {
			if strings.HasPrefix(e.Name, "tun") {
				n++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKernelEndFaults: the transport faults act on the session's conn, so
// they hold on the kernel end too (TestDeviceDropsOversizeFromCarelessHost
// there).
func TestKernelEndFaults(t *testing.T) {
	dev, err := NewServer(ServerConfig{RSDPort: testRSDPort, Kernel: true, Faults: Faults{DropAbove: 8192}})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
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
		t.Fatal("upload through a dropping kernel end succeeded without clamping")
	}
	if deviceSession(t, dev, params.ClientAddress).Stats().DroppedAbove == 0 {
		t.Fatal("kernel end dropped nothing")
	}
}
