package tunnel

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// forEachEnd runs test on the netstack end and, on Linux (tests run as
// root), on the kernel end.
func forEachEnd(t *testing.T, test func(t *testing.T, kernel bool)) {
	t.Run("netstack", func(t *testing.T) { test(t, false) })
	t.Run("kernel", func(t *testing.T) { test(t, true) })
}

// TestKernelEnd: the kernel end has no userspace stack, listens on the
// device address inside its namespace, gives each session a TUN of its own
// that goes when the session does, and leaves no goroutine or descriptor
// (the namespace's included) once closed. Traffic on it:
// TestDeviceTwoSessions/kernel.
func TestKernelEnd(t *testing.T) {
	testkit.CheckLeaks(t)
	dev := newTestDeviceEnd(t, Faults{}, true)
	if dev.Stack() != nil {
		t.Fatal("kernel end has a userspace stack")
	}
	ln, err := dev.ListenTCP(testRSDPort)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got, want := ln.Addr().String(), netip.AddrPortFrom(dev.Address(), testRSDPort).String(); got != want {
		t.Fatalf("listening on %s, want %s", got, want)
	}
	p1, _, _ := hostOverNetstack(t, dev, PumpConfig{})
	p2, _, _ := hostOverNetstack(t, dev, PumpConfig{})
	defer p2.Close()
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
