package establish

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// A host configured the way pymobiledevice3 and go-ios configure theirs:
// the tunnel address is added without IFA_F_NODAD while the link is down,
// then the link goes up and a connection is opened at once. Until the
// kernel's address work runs (the moment it also sends its Router
// Solicitation), the address is tentative and a connection takes another of
// the host's addresses as its source; here that is otherAddr, on a second
// interface of the namespace.

var otherAddr = netip.MustParsePrefix("fd99:1:2:3::9/64")

// tentativeHost is a network namespace holding otherAddr, where
// pmd3-style TUNs are created and connections opened.
type tentativeHost struct {
	ns   *testkit.NetNS
	mu   sync.Mutex
	n    int
	name string // the last TUN created
}

func newTentativeHost(t testing.TB) *tentativeHost {
	h := &tentativeHost{ns: testkit.NewNetNS(t)}
	var other *utun.Kernel
	if err := h.ns.Do(func() (err error) {
		other, err = utun.CreateKernel(utun.Config{Address: otherAddr, MTU: 1500})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return h
}

// newTUN creates the host's TUN with the tunnel address, link down.
func (h *tentativeHost) newTUN(t testing.TB) func(tunnel.Params) (tun.Device, error) {
	return func(p tunnel.Params) (tun.Device, error) {
		h.mu.Lock()
		h.n++
		name := fmt.Sprintf("tent%d", h.n)
		h.name = name
		h.mu.Unlock()
		var dev tun.Device
		err := h.ns.Do(func() (err error) {
			if dev, err = tun.CreateTUN(name, p.MTU); err != nil {
				return err
			}
			// exec from the namespace's thread: ip runs in the namespace.
			if out, err := exec.Command("ip", "-6", "addr", "add", p.ClientPrefix().String(), "dev", name).CombinedOutput(); err != nil {
				dev.Close()
				return fmt.Errorf("ip addr add: %v: %s", err, out)
			}
			return nil
		})
		return dev, err
	}
}

// connectNow sets the last TUN's link up and connects to dst at once (from
// otherAddr when bindOther), as a client does the instant its tunnel is up.
// It returns the connection's source address.
func (h *tentativeHost) connectNow(dst netip.AddrPort, bindOther bool, wait time.Duration) (netip.Addr, error) {
	var local netip.Addr
	err := h.ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq(h.name)
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("get flags: %w", err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("link up: %w", err)
		}
		if bindOther {
			if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: otherAddr.Addr().As16()}); err != nil {
				return fmt.Errorf("bind: %w", err)
			}
		}
		err = unix.Connect(fd, &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()})
		if err != nil && err != unix.EINPROGRESS {
			return fmt.Errorf("connect: %w", err)
		}
		if sa, err := unix.Getsockname(fd); err == nil {
			local = netip.AddrFrom16(sa.(*unix.SockaddrInet6).Addr)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		deadline := time.Now().Add(wait)
		for {
			n, err := unix.Poll(pfd, int(time.Until(deadline).Milliseconds()))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("connect from %v: no answer in %v", local, wait)
			}
			break
		}
		if soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soErr != 0 {
			return fmt.Errorf("connect from %v: %v %v", local, err, unix.Errno(soErr))
		}
		return nil
	})
	return local, err
}

// freshTunnel is one new tunnel to dev over loopback TCP, its host side on
// newTUN.
func freshTunnel(t *testing.T, dev *tunnel.Server, newTUN func(tunnel.Params) (tun.Device, error)) (*tunnel.Pump, tunnel.Params) {
	t.Helper()
	hostRaw, devRaw := testkit.TCPLoopback(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sessc := make(chan error, 1)
	go func() {
		_, err := dev.StartSession(ctx, devRaw)
		sessc <- err
	}()
	pump, params, err := tunnel.StartClient(ctx, hostRaw, tunnel.ClientConfig{NewTUN: newTUN})
	if err != nil {
		t.Fatalf("host: %v", err)
	}
	if err := <-sessc; err != nil {
		t.Fatalf("device: %v", err)
	}
	return pump, params
}

// TestKernelFirstSYNFreshTunnels: 200 fresh tunnels to one device, each
// from a pmd3-style host TUN with a connection opened the instant it is up
// (every fourth one bound to the host's other address, the source the
// kernel picks while the tunnel address is tentative). None may be lost.
func TestKernelFirstSYNFreshTunnels(t *testing.T) {
	testkit.CheckLeaks(t)
	dev := rsdDevice(t)
	h := newTentativeHost(t)
	const n = 200
	var natural, bound int
	for i := range n {
		pump, params := freshTunnel(t, dev, h.newTUN(t))
		bind := i%4 == 3
		// 5 s: past gVisor's first SYN-ACK retransmission (1 s) and the
		// kernel's first SYN retransmissions, far below anything a lost
		// SYN-ACK recovers from.
		local, err := h.connectNow(netip.AddrPortFrom(params.ServerAddress, params.ServerRSDPort), bind, 5*time.Second)
		if err != nil {
			t.Fatalf("tunnel %d (host %v): %v", i, params.ClientAddress, err)
		}
		switch {
		case bind:
			bound++
		case local == otherAddr.Addr():
			natural++
		}
		pump.Close()
	}
	t.Logf("%d tunnels, none lost; %d first connections from the host's other address by the kernel's own choice (tentative tunnel address), %d bound to it", n, natural, bound)
}

// TestEstablishFirstSYNTentativeHost: the same over every establishment
// path (CoreDeviceProxy, TLS-PSK over RSD and the network, QUIC), a few
// fresh tunnels each.
func TestEstablishFirstSYNTentativeHost(t *testing.T) {
	for _, p := range establishPaths {
		t.Run(p.name, func(t *testing.T) {
			testkit.CheckLeaks(t)
			f := newFixture(t, fixtureConfig{})
			h := newTentativeHost(t)
			for i := range 6 {
				opt := f.options(nil, p.proto)
				opt.NewTUN = h.newTUN(t)
				tn, err := f.start(t, p.path, opt)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := h.connectNow(netip.AddrPortFrom(tn.Params.ServerAddress, tn.Params.ServerRSDPort), i%2 == 1, 5*time.Second); err != nil {
					t.Fatalf("tunnel %d: %v", i, err)
				}
				tn.Close()
			}
		})
	}
}

// TestKernelHostFreshTunnelsNoLoss: iosmux's own host, a kernel TUN per
// tunnel (KernelTUN) in a namespace, a connection opened the instant each
// tunnel is up, 100 fresh tunnels: none may lose a packet to the kernel
// not yet taking the new address (Ip6InAddrErrors: a SYN-ACK dropped so,
// the connection waited a second for the retransmission, about 1 tunnel
// in 10 before utun waited for the address's local route).
func TestKernelHostFreshTunnelsNoLoss(t *testing.T) {
	testkit.CheckLeaks(t)
	dev := rsdDevice(t)
	ns := testkit.NewNetNS(t)
	newTUN := func(p tunnel.Params) (dev tun.Device, err error) {
		err = ns.Do(func() (err error) {
			dev, err = tunnel.KernelTUN("")(p)
			return err
		})
		return dev, err
	}
	// Counted from the tunnel being up to the connection made, so a straggler
	// of an earlier tunnel's teardown (a retransmitted FIN reaching a TUN
	// already gone) is not taken for a SYN-ACK lost on the way in.
	addrErrors := func() (n uint64) {
		ns.Do(func() error {
			b, err := os.ReadFile("/proc/thread-self/net/snmp6")
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) == 2 && f[0] == "Ip6InAddrErrors" {
					n, _ = strconv.ParseUint(f[1], 10, 64)
				}
			}
			return nil
		})
		return n
	}
	var dropped uint64
	for i := range 100 {
		pump, params := freshTunnel(t, dev, newTUN)
		before := addrErrors()
		if err := ns.Do(func() error {
			d := net.Dialer{Timeout: 10 * time.Second}
			c, err := d.Dial("tcp6", netip.AddrPortFrom(params.ServerAddress, params.ServerRSDPort).String())
			if err == nil {
				c.Close()
			}
			return err
		}); err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		dropped += addrErrors() - before
		pump.Close()
	}
	if dropped != 0 {
		t.Fatalf("the host's kernel dropped %d packets to an address it did not take yet (Ip6InAddrErrors)", dropped)
	}
}
