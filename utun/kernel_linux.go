package utun

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"golang.zx2c4.com/wireguard/tun"
)

// defaultLinuxName makes the kernel pick tunN, as pmd3 does (tunnel.md
// §9.1); interface polling must ignore tun* names.
const defaultLinuxName = "tun%d"

// createKernel opens /dev/net/tun through wireguard-go (IFF_TUN | IFF_NO_PI
// | IFF_VNET_HDR, so reads and writes are bare packets with segmentation
// offload) and configures it over rtnetlink: address with IFA_F_NODAD so it
// is usable at once, MTU, up, and a peer route when needed; it returns once
// the kernel takes packets for the address (waitLocal).
func createKernel(cfg Config) (tun.Device, string, error) {
	name := cfg.Name
	if name == "" {
		name = defaultLinuxName
	}
	dev, err := tun.CreateTUN(name, cfg.MTU)
	if err != nil {
		return nil, "", fmt.Errorf("utun: create TUN: %w", err)
	}
	if name, err = dev.Name(); err != nil {
		dev.Close()
		return nil, "", fmt.Errorf("utun: TUN name: %w", err)
	}
	if err := configureLinux(name, cfg); err != nil {
		dev.Close()
		return nil, "", fmt.Errorf("utun: configure %s: %w", name, err)
	}
	return dev, name, nil
}

func configureLinux(name string, cfg Config) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return err
	}
	if err := enableIPv6(name); err != nil {
		return err
	}
	nl, err := openRTNL()
	if err != nil {
		return err
	}
	defer nl.close()
	if err := nl.addAddr(ifi.Index, cfg.Address); err != nil {
		return fmt.Errorf("add address %v: %w", cfg.Address, err)
	}
	if err := nl.setLink(ifi.Index, cfg.MTU, true); err != nil {
		return fmt.Errorf("set MTU %d and up: %w", cfg.MTU, err)
	}
	if cfg.needsPeerRoute() {
		if err := nl.addRoute(ifi.Index, cfg.Peer); err != nil {
			return fmt.Errorf("add route to %v: %w", cfg.Peer, err)
		}
	}
	return nl.waitLocal(cfg.Address.Addr())
}

// enableIPv6 clears disable_ipv6 on the interface if it is set: the
// interface inherits net.ipv6.conf.default, which some hosts turn off.
func enableIPv6(name string) error {
	path := "/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6"
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return errors.New("IPv6 is not available in this kernel")
	}
	if err != nil {
		return err
	}
	if len(b) > 0 && b[0] == '0' {
		return nil
	}
	return os.WriteFile(path, []byte("0\n"), 0)
}
