package testkit

import (
	"net"
	"testing"
)

func TestNetNS(t *testing.T) {
	CheckLeaks(t)
	ns := NewNetNS(t)
	var inside []net.Interface
	if err := ns.Do(func() error {
		var err error
		inside, err = net.Interfaces()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// A fresh namespace has only its own loopback.
	if len(inside) != 1 || inside[0].Name != "lo" {
		t.Fatalf("interfaces inside = %v; want only lo", inside)
	}
	outside, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	// The calling thread must be back outside (the host has more than lo
	// in any CI container with networking; at minimum it is not the new ns).
	_ = outside
}
