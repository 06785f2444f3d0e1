package netns

import (
	"os/exec"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
}

// Link brings up lo and a veth pair a–b in the calling process's network
// namespace, with addrA/64 on a and addrB/64 on b, marked IFA_F_NODAD so
// they are usable at once (no duplicate address detection to wait for).
func Link(t testing.TB, a, addrA, b, addrB string) {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s–%s: %v", a, b, err)
	}
	for name, addr := range map[string]string{a: addrA, b: addrB} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		ad, err := netlink.ParseAddr(addr + "/64")
		if err != nil {
			t.Fatal(err)
		}
		ad.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(l, ad); err != nil {
			t.Fatalf("address %s on %s: %v", addr, name, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}
