//go:build linux

package tunnel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/iosmux/iosmux/internal/netns"
	"github.com/iosmux/iosmux/utun"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// kernelEnd is the device end of ServerConfig.Kernel: instead of a gVisor
// stack, the device's address and its services live in a network namespace
// of their own on this host's kernel, and each session is a kernel TUN
// there with its pump (the same Pump as every other end). The kernel routes
// each host's address to its session's TUN (a /128 route), so there is no
// router goroutine and no copy between a shared stack and the sessions:
// what the device end costs is about what the host's own kernel TUN costs,
// which makes it the end to measure a host against.
//
// The namespace has no name: it lives while the server holds its
// descriptor and the sockets and TUNs inside it, so it goes with the
// process even when the process is killed.
type kernelEnd struct {
	ns   *netns.NS
	addr netip.Addr
}

func newKernelEnd(addr netip.Addr) (*kernelEnd, error) {
	ns, err := netns.New()
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("%w: %w", ErrKernelNeedsRoot, err)
		}
		return nil, fmt.Errorf("tunnel: kernel device end: %w", err)
	}
	// The services listen on the device address before any session's TUN
	// holds it (and between sessions): let sockets bind an address that is
	// not configured yet.
	err = ns.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/ip_nonlocal_bind", []byte("1"), 0)
	})
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("tunnel: kernel device end: %w", err)
	}
	return &kernelEnd{ns: ns, addr: addr}, nil
}

// listenTCP listens on the device address inside the namespace.
func (k *kernelEnd) listenTCP(port uint16) (net.Listener, error) {
	var ln net.Listener
	err := k.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp6", netip.AddrPortFrom(k.addr, port).String())
		return err
	})
	return ln, err
}

// sessionTUN creates the TUN of the session whose host is client: the
// device address (/128) on it and a route to client through it.
func (k *kernelEnd) sessionTUN(client netip.Addr, mtu int) (tun.Device, error) {
	var dev tun.Device
	err := k.ns.Do(func() error {
		kd, err := utun.CreateKernel(utun.Config{Address: netip.PrefixFrom(k.addr, 128), Peer: client, MTU: mtu})
		dev = kd
		return err
	})
	return dev, err
}

func (k *kernelEnd) close() { k.ns.Close() }
