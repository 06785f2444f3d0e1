package utun

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/net/route"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// macOS utun (tunnel.md §9.2). wireguard-go opens the utun control socket
// and sets the MTU; we assign the address with SIOCAIFADDR_IN6 and bring the
// interface up with SIOCSIFFLAGS, where pmd3 runs ifconfig.

const (
	// siocAIFADDRIN6 is _IOW('i', 26, struct in6_aliasreq), 128 bytes.
	siocAIFADDRIN6 = 0x8080691a
	// in6IFFNODAD skips duplicate address detection (netinet6/in6_var.h).
	in6IFFNODAD = 0x0020
	// nd6InfiniteLifetime marks an address that never expires.
	nd6InfiniteLifetime = 0xffffffff

	sizeofSockaddrIn6  = 28
	sizeofIn6AliasReq  = 128
	sizeofIfreqFlags   = 32
	in6AliasReqFlagsAt = 16 + 3*sizeofSockaddrIn6 // ifra_flags
	in6AliasReqLifeAt  = in6AliasReqFlagsAt + 4   // ifra_lifetime
)

func createKernel(cfg Config) (tun.Device, string, error) {
	name := cfg.Name
	if name == "" {
		name = "utun"
	}
	dev, err := tun.CreateTUN(name, cfg.MTU)
	if err != nil {
		return nil, "", fmt.Errorf("utun: create utun: %w", err)
	}
	if name, err = dev.Name(); err != nil {
		dev.Close()
		return nil, "", fmt.Errorf("utun: utun name: %w", err)
	}
	if err := configureDarwin(name, cfg); err != nil {
		dev.Close()
		return nil, "", fmt.Errorf("utun: configure %s: %w", name, err)
	}
	return dev, name, nil
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// putSockaddrIn6 writes a struct sockaddr_in6 for a at b[0:28].
func putSockaddrIn6(b []byte, a [16]byte) {
	b[0] = sizeofSockaddrIn6
	b[1] = unix.AF_INET6
	copy(b[8:24], a[:])
}

func configureDarwin(name string, cfg Config) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)

	// struct in6_aliasreq: name, addr, dstaddr (unused), prefixmask,
	// flags, lifetime {expire, preferred int64; vltime, pltime uint32}.
	var req [sizeofIn6AliasReq]byte
	copy(req[:unix.IFNAMSIZ], name)
	putSockaddrIn6(req[16:], cfg.Address.Addr().As16())
	var mask [16]byte
	for i := 0; i < cfg.Address.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	putSockaddrIn6(req[16+2*sizeofSockaddrIn6:], mask)
	binary.NativeEndian.PutUint32(req[in6AliasReqFlagsAt:], in6IFFNODAD)
	binary.NativeEndian.PutUint32(req[in6AliasReqLifeAt+16:], nd6InfiniteLifetime)
	binary.NativeEndian.PutUint32(req[in6AliasReqLifeAt+20:], nd6InfiniteLifetime)
	if err := ioctl(fd, siocAIFADDRIN6, unsafe.Pointer(&req[0])); err != nil {
		return fmt.Errorf("add address %v: %w", cfg.Address, err)
	}

	// struct ifreq with ifr_flags (short) after the name.
	var ifr [sizeofIfreqFlags]byte
	copy(ifr[:unix.IFNAMSIZ], name)
	if err := ioctl(fd, unix.SIOCGIFFLAGS, unsafe.Pointer(&ifr[0])); err != nil {
		return fmt.Errorf("get flags: %w", err)
	}
	flags := binary.NativeEndian.Uint16(ifr[unix.IFNAMSIZ:])
	binary.NativeEndian.PutUint16(ifr[unix.IFNAMSIZ:], flags|unix.IFF_UP)
	if err := ioctl(fd, unix.SIOCSIFFLAGS, unsafe.Pointer(&ifr[0])); err != nil {
		return fmt.Errorf("set up: %w", err)
	}

	if cfg.needsPeerRoute() {
		if err := addHostRoute(name, cfg); err != nil {
			return fmt.Errorf("add route to %v: %w", cfg.Peer, err)
		}
	}
	return nil
}

// addHostRoute adds a route to cfg.Peer through the interface on a routing
// socket.
func addHostRoute(name string, cfg Config) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return err
	}
	msg := route.RouteMessage{
		Version: unix.RTM_VERSION,
		Type:    unix.RTM_ADD,
		Flags:   unix.RTF_UP | unix.RTF_HOST | unix.RTF_STATIC,
		Index:   ifi.Index,
		ID:      uintptr(os.Getpid()),
		Seq:     1,
		Addrs: []route.Addr{
			unix.RTAX_DST:     &route.Inet6Addr{IP: cfg.Peer.As16()},
			unix.RTAX_GATEWAY: &route.LinkAddr{Index: ifi.Index, Name: name},
		},
	}
	b, err := msg.Marshal()
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_ROUTE, unix.SOCK_RAW, unix.AF_UNSPEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, b)
	return err
}
