package utun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"golang.org/x/sys/unix"
)

// createIn creates a kernel TUN inside ns.
func createIn(t *testing.T, ns *testkit.NetNS, cfg Config) *Kernel {
	t.Helper()
	var k *Kernel
	if err := ns.Do(func() (err error) {
		k, err = CreateKernel(cfg)
		return err
	}); err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	return k
}

func TestKernelConfigured(t *testing.T) {
	testkit.CheckLeaks(t)
	ns := testkit.NewNetNS(t)
	k := createIn(t, ns, Config{Address: hostPrefix, Peer: devAddr, MTU: 16000})
	name := k.InterfaceName()
	if !strings.HasPrefix(name, "tun") {
		t.Errorf("name %q, want tunN", name)
	}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		if ifi.MTU != 16000 {
			t.Errorf("MTU %d, want 16000", ifi.MTU)
		}
		if ifi.Flags&net.FlagUp == 0 {
			t.Errorf("interface not up: %v", ifi.Flags)
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return err
		}
		found := false
		for _, a := range addrs {
			if a.String() == hostPrefix.String() {
				found = true
			}
		}
		if !found {
			t.Errorf("addresses %v lack %v", addrs, hostPrefix)
		}
		// The prefix route carries traffic to the peer: a UDP connect
		// needs a route and picks our address as source.
		c, err := net.Dial("udp6", "[fd58:8c92:8961::1]:9")
		if err != nil {
			return err
		}
		defer c.Close()
		if got := c.LocalAddr().(*net.UDPAddr).IP.String(); got != hostPrefix.Addr().String() {
			t.Errorf("source address %s, want %s", got, hostPrefix.Addr())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if mtu, _ := k.MTU(); mtu != 16000 {
		t.Errorf("MTU() = %d", mtu)
	}
	k.Close()
	k.Close()
	// Closing deletes the interface.
	if err := ns.Do(func() error {
		_, err := net.InterfaceByName(name)
		if err == nil {
			return errors.New("interface still exists after Close")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestKernelPeerRoute(t *testing.T) {
	testkit.CheckLeaks(t)
	ns := testkit.NewNetNS(t)
	peer := netip.MustParseAddr("fd99::1") // outside fd58:8c92:8961::/64
	dial := func() error {
		return ns.Do(func() error {
			c, err := net.Dial("udp6", "[fd99::1]:9")
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	// Without a route the namespace cannot reach it.
	k := createIn(t, ns, Config{Address: hostPrefix, MTU: 1500})
	if err := dial(); !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("dial without peer route: %v, want ENETUNREACH", err)
	}
	k.Close()
	k = createIn(t, ns, Config{Address: hostPrefix, Peer: peer, MTU: 1500})
	defer k.Close()
	if err := dial(); err != nil {
		t.Fatalf("dial with peer route: %v", err)
	}
}

func TestKernelRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Address: netip.MustParsePrefix("10.0.0.2/24"), MTU: 1500},
		{Address: hostPrefix, MTU: 1000},
		{Address: hostPrefix, Peer: netip.MustParseAddr("10.0.0.1"), MTU: 1500},
		{},
	} {
		if k, err := CreateKernel(cfg); err == nil {
			k.Close()
			t.Errorf("CreateKernel(%+v) succeeded", cfg)
		}
	}
}

// TestKernelToNetstack moves a TCP transfer between a kernel socket and a
// netstack listener, with packets copied between the kernel TUN and the
// netstack: the batched, offloaded reads and writes of the kernel device
// keep TCP intact.
func TestKernelToNetstack(t *testing.T) {
	testkit.CheckLeaks(t)
	ns := testkit.NewNetNS(t)
	k := createIn(t, ns, Config{Address: hostPrefix, Peer: devAddr, MTU: 16000})
	dev, err := NewNetstack(NetstackConfig{Address: devPrefix, MTU: 16000})
	if err != nil {
		t.Fatal(err)
	}
	stop := link(k, dev)
	defer stop()
	ln, err := dev.ListenTCP(netip.AddrPortFrom(devAddr, 58783))
	if err != nil {
		t.Fatal(err)
	}
	wait := serveBulk(t, ln)
	defer wait()
	var c net.Conn
	if err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err = d.DialContext(context.Background(), "tcp6", "[fd58:8c92:8961::1]:58783")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := testkit.Bulk(c, 16<<20, 16<<20); err != nil {
		t.Fatal(err)
	}
}

func TestEnableIPv6MissingInterface(t *testing.T) {
	if err := enableIPv6("no-such-if0"); err == nil {
		t.Fatal("no error for a missing interface")
	}
}

// TestKernelAddressLocalOnReturn: when CreateKernel returns, the kernel
// already delivers packets to the tunnel address (its local route is in).
// Linux installs that route only when its address work runs after the link
// is up; before, a SYN-ACK to the address was dropped (Ip6InAddrErrors) and
// a connection opened at once waited a second for the retransmission.
func TestKernelAddressLocalOnReturn(t *testing.T) {
	testkit.CheckLeaks(t)
	ns := testkit.NewNetNS(t)
	for i := range 20 {
		err := ns.Do(func() error {
			k, err := CreateKernel(Config{Address: hostPrefix, Peer: devAddr, MTU: 16000})
			if err != nil {
				return err
			}
			defer k.Close()
			nl, err := openRTNL()
			if err != nil {
				return err
			}
			defer nl.close()
			typ, err := nl.routeType(hostPrefix.Addr())
			if err != nil {
				return err
			}
			if typ != unix.RTN_LOCAL {
				return fmt.Errorf("tunnel %d: route type of %v is %d right after CreateKernel, want RTN_LOCAL (%d)", i, hostPrefix.Addr(), typ, unix.RTN_LOCAL)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestParseReply(t *testing.T) {
	c := &rtnl{seq: 3}
	route := nlMsg(unix.RTM_NEWROUTE, 3, []byte{unix.AF_INET6, 128, 0, 0, 254, 2, 0, unix.RTN_LOCAL, 0, 0, 0, 0})
	ack := nlMsg(unix.NLMSG_ERROR, 3, make([]byte, 4))
	p, done, err := c.parseReply(append(route, ack...), unix.RTM_NEWROUTE)
	if !done || err != nil || len(p) != 12 || p[7] != unix.RTN_LOCAL {
		t.Fatalf("parseReply = %x, %v, %v", p, done, err)
	}
	// Another request's answer is not ours.
	p, done, _ = c.parseReply(nlMsg(unix.RTM_NEWROUTE, 2, make([]byte, 12)), unix.RTM_NEWROUTE)
	if p != nil || done {
		t.Fatalf("took seq 2's answer: %x %v", p, done)
	}
}
