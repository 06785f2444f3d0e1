//go:build !linux

package tunnel

import (
	"errors"
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/tun"
)

// kernelEnd needs Linux network namespaces.
type kernelEnd struct{}

var errKernelEndLinux = errors.New("tunnel: the kernel device end needs Linux (network namespaces)")

func newKernelEnd(netip.Addr) (*kernelEnd, error) { return nil, errKernelEndLinux }

func (*kernelEnd) listenTCP(uint16) (net.Listener, error) { return nil, errKernelEndLinux }

func (*kernelEnd) sessionTUN(netip.Addr, int) (tun.Device, error) { return nil, errKernelEndLinux }

func (*kernelEnd) close() {}
