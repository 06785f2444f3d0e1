package utun

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

// Config configures a kernel TUN interface from the CDTunnel handshake
// (tunnel.md §9): create, assign address, set MTU, bring up, in that order.
type Config struct {
	// Name is the interface name; "" lets the kernel choose ("tunN" on
	// Linux, "utunN" on macOS). Linux accepts a pattern such as "tun%d".
	Name string
	// Address is the host's tunnel address with the link prefix
	// (clientParameters.address and netmask).
	Address netip.Prefix
	// Peer is the device's tunnel address (serverAddress). The kernel's
	// prefix route covers it normally; when it lies outside Address's
	// prefix a host route to it through the interface is added.
	Peer netip.Addr
	// MTU is clientParameters.mtu.
	MTU int
}

func (c Config) validate() error {
	switch {
	case !c.Address.IsValid() || !c.Address.Addr().Is6() || c.Address.Addr().Is4In6() || c.Address.Addr().Zone() != "":
		return fmt.Errorf("utun: address %v is not an IPv6 prefix", c.Address)
	case c.Peer.IsValid() && (!c.Peer.Is6() || c.Peer.Is4In6()):
		return fmt.Errorf("utun: peer %v is not an IPv6 address", c.Peer)
	case c.MTU < 1280 || c.MTU > 65535:
		return fmt.Errorf("utun: MTU %d outside [1280, 65535]", c.MTU)
	}
	return nil
}

// needsPeerRoute reports whether the peer lies outside the on-link prefix.
func (c Config) needsPeerRoute() bool {
	return c.Peer.IsValid() && !c.Address.Masked().Contains(c.Peer)
}

// Kernel is a configured kernel TUN interface (wireguard-go's tun.Device
// underneath). Closing it closes the descriptor, and the kernel then deletes
// the interface with its address and routes.
//
// Kernel drains the device's event channel itself, because wireguard-go's
// event goroutines block when nobody reads it; Events returns a copy that
// drops events nobody has collected.
type Kernel struct {
	dev    tun.Device
	name   string
	mtu    int
	events chan tun.Event
	done   chan struct{} // closed once the device's event channel is closed

	closeOnce sync.Once
	closeErr  error
}

var _ tun.Device = (*Kernel)(nil)

// CreateKernel creates and configures a TUN interface. It needs root or
// CAP_NET_ADMIN on Linux and root on macOS. The interface and every socket
// it uses belong to the calling thread's network namespace.
func CreateKernel(cfg Config) (*Kernel, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dev, name, err := createKernel(cfg)
	if err != nil {
		return nil, err
	}
	k := &Kernel{
		dev:    dev,
		name:   name,
		mtu:    cfg.MTU,
		events: make(chan tun.Event, 8),
		done:   make(chan struct{}),
	}
	go k.drain()
	return k, nil
}

func (k *Kernel) drain() {
	defer close(k.done)
	defer close(k.events)
	for ev := range k.dev.Events() {
		select {
		case k.events <- ev:
		default:
		}
	}
}

// InterfaceName returns the kernel's name for the interface.
func (k *Kernel) InterfaceName() string { return k.name }

// File implements tun.Device.
func (k *Kernel) File() *os.File { return k.dev.File() }

// Read implements tun.Device; offset must be at least 10 on Linux (virtio
// header).
func (k *Kernel) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return k.dev.Read(bufs, sizes, offset)
}

// Write implements tun.Device; offset must be at least 10 on Linux.
func (k *Kernel) Write(bufs [][]byte, offset int) (int, error) {
	return k.dev.Write(bufs, offset)
}

// MTU returns the configured MTU. (Asking the kernel would resolve the name
// in the caller's network namespace, which need not be the interface's.)
func (k *Kernel) MTU() (int, error) { return k.mtu, nil }

// Name implements tun.Device.
func (k *Kernel) Name() (string, error) { return k.name, nil }

// Events implements tun.Device.
func (k *Kernel) Events() <-chan tun.Event { return k.events }

// Coalesces reports whether Write merges consecutive segments of a TCP
// flow into one packet for the kernel (Linux with the virtio header, which
// wireguard-go enables with offloads and then reads and writes in batches).
// It merges only into buffers with room for the result (tunnel.Coalescer).
func (k *Kernel) Coalesces() bool { return runtime.GOOS == "linux" && k.dev.BatchSize() > 1 }

// BatchSize implements tun.Device.
func (k *Kernel) BatchSize() int { return k.dev.BatchSize() }

// Close closes the device and returns once its event goroutines have ended.
// Pending Reads return an error. It is idempotent.
func (k *Kernel) Close() error {
	k.closeOnce.Do(func() {
		k.closeErr = k.dev.Close()
		<-k.done
	})
	return k.closeErr
}
