package utun

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// TestPortRelay reaches two device ports at the same ports of one loopback
// address of their own, as a client told "address, port" does.
func TestPortRelay(t *testing.T) {
	testkit.CheckLeaks(t)
	host, dev, stop := newPair(t)
	defer stop()
	local := netip.MustParseAddr("127.0.0.1")
	if runtime.GOOS == "linux" {
		local = netip.MustParseAddr("127.77.0.9") // any 127/8 address is local there
	}
	// Two ports free on local: take them from the kernel, then serve them
	// on the device.
	var ports []uint16
	for range 2 {
		ln, err := net.Listen("tcp", net.JoinHostPort(local.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, uint16(ln.Addr().(*net.TCPAddr).Port))
		ln.Close()
	}
	for _, port := range ports {
		ln, err := dev.ListenTCP(netip.AddrPortFrom(devAddr, port))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					c.Write([]byte{byte(port), byte(port >> 8)})
					io.Copy(c, c)
					c.Close()
				}()
			}
		}()
	}
	r := NewPortRelay(local, devAddr, host.DialContext, nil, nil)
	defer r.Close()
	if err := r.AddAll(append(ports, ports[0])); err != nil {
		t.Fatal(err)
	}
	if got := r.Ports(); !slices.Equal(got, slices.Sorted(slices.Values(ports))) {
		t.Fatalf("Ports = %v, want %v", got, ports)
	}
	for _, port := range ports {
		c, err := net.Dial("tcp", netip.AddrPortFrom(local, port).String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("ping"))
		buf := make([]byte, 6)
		if _, err := io.ReadFull(c, buf); err != nil || int(buf[0])|int(buf[1])<<8 != int(port) || string(buf[2:]) != "ping" {
			t.Fatalf("port %d through the relay: %x, %v", port, buf, err)
		}
		c.Close()
	}
	// A port another listener holds fails alone, with the listener's error.
	busy, err := net.Listen("tcp", net.JoinHostPort(local.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := r.Add(uint16(busy.Addr().(*net.TCPAddr).Port)); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Add on a busy port: %v, want EADDRINUSE", err)
	}
	r.Close()
	r.Close()
	if err := r.Add(ports[0]); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	if _, err := net.Dial("tcp", netip.AddrPortFrom(local, ports[0]).String()); err == nil {
		t.Fatal("relay port still open after Close")
	}
}
