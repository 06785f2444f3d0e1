// Package vethtest links test network namespaces with veth pairs, so mDNS
// and link-watching tests never touch the host's interfaces. Linux only;
// needs root. Test code only.
package vethtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NS is a network namespace that runs a function on a thread inside it
// (internal/testkit.NetNS).
type NS interface {
	Do(func() error) error
}

// Run runs a command inside ns (a child forked from a thread inside the
// namespace starts in it).
func Run(ns NS, args ...string) error {
	return ns.Do(func() error { return run(nil, args...) })
}

func run(extra []*os.File, args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.ExtraFiles = extra
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Prepare turns off IPv6 duplicate address detection (so link-local
// addresses are usable at once) and brings lo up.
func Prepare(ns NS) error {
	return ns.Do(func() error {
		for _, p := range []string{"/proc/sys/net/ipv6/conf/all/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad"} {
			if err := os.WriteFile(p, []byte("0"), 0); err != nil {
				return err
			}
		}
		return run(nil, "ip", "link", "set", "lo", "up")
	})
}

// Pair creates a veth pair nameA (in a, with v4A/24) — nameB (in b, with
// v4B/24), brings both up and waits until both have an IPv6 link-local
// address. a and b must have been Prepared; a == b is allowed.
func Pair(t testing.TB, a, b NS, nameA, nameB, v4A, v4B string) {
	t.Helper()
	var fdB int
	if err := b.Do(func() error {
		var err error
		fdB, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatalf("vethtest: %v", err)
	}
	nsB := os.NewFile(uintptr(fdB), "netns-b")
	defer nsB.Close()
	if err := a.Do(func() error {
		return run([]*os.File{nsB}, "ip", "link", "add", nameA, "type", "veth", "peer", "name", nameB, "netns", "/proc/self/fd/3")
	}); err != nil {
		t.Fatalf("vethtest: %v", err)
	}
	for _, s := range []struct {
		ns         NS
		name, addr string
	}{{a, nameA, v4A}, {b, nameB, v4B}} {
		if err := Run(s.ns, "ip", "addr", "add", s.addr+"/24", "dev", s.name); err != nil {
			t.Fatalf("vethtest: %v", err)
		}
		if err := Run(s.ns, "ip", "link", "set", s.name, "up"); err != nil {
			t.Fatalf("vethtest: %v", err)
		}
	}
	WaitLinkLocal(t, a, nameA)
	WaitLinkLocal(t, b, nameB)
}

// WaitLinkLocal waits (up to 10 s) until the interface has an IPv6
// link-local address. This waits for the kernel to finish set-up; it is not
// a timed assertion.
func WaitLinkLocal(t testing.TB, ns NS, name string) {
	t.Helper()
	for range 1000 {
		found := false
		err := ns.Do(func() error {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			addrs, err := ifi.Addrs()
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() == nil && ipn.IP.IsLinkLocalUnicast() {
					found = true
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, unix.ENODEV) {
			t.Fatalf("vethtest: %s: %v", name, err)
		}
		if found {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("vethtest: %s got no IPv6 link-local address", name)
}
