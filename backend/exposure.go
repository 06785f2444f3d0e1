package backend

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// A backend that listens beyond loopback serves the device's trusted RSD
// and every service to whoever connects: no client is authenticated (a
// real iPhone trusts the tunnel instead). Two things keep that honest:
// clients are told a concrete address, never a wildcard they cannot dial,
// and an allow-list of client prefixes can shut everyone else out.

// publicAddr is the address clients are told for a listener on host:
// host itself, or advertise (or a picked address) when host is a
// wildcard.
func publicAddr(host, advertise netip.Addr) (netip.Addr, error) {
	if !host.IsUnspecified() {
		return host, nil
	}
	if advertise.IsValid() {
		if advertise.IsUnspecified() {
			return netip.Addr{}, fmt.Errorf("backend: advertise %s is a wildcard too: give the address clients should dial", advertise)
		}
		if host.Is4() && !advertise.Unmap().Is4() {
			return netip.Addr{}, fmt.Errorf("backend: advertise %s: the listener on %s takes IPv4 only", advertise, host)
		}
		return advertise.Unmap(), nil
	}
	return pickAddr(host.Is6(), interfaceAddrs())
}

// pickAddr chooses from the host's addresses: a global unicast one of the
// listener's family, then (for a dual-stack :: listener) an IPv4 one, then
// loopback.
func pickAddr(v6 bool, addrs []netip.Addr) (netip.Addr, error) {
	var v4 netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsGlobalUnicast() {
			continue
		}
		if a.Is6() && v6 {
			return a, nil
		}
		if a.Is4() && !v4.IsValid() {
			v4 = a
		}
	}
	switch {
	case v4.IsValid():
		return v4, nil
	case v6:
		return netip.IPv6Loopback(), nil
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
}

// interfaceAddrs lists the addresses of the interfaces that are up.
func interfaceAddrs() []netip.Addr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 {
			continue
		}
		as, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP); ok {
					out = append(out, ip)
				}
			}
		}
	}
	return out
}

// reachable is a with a wildcard host replaced by the public address.
func (b *Backend) reachable(a net.Addr) net.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return a
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(b.public, uint16(ta.Port)))
}

// allowed applies Config.AllowClients to a new connection; a refusal is
// logged at most once a second.
func (b *Backend) allowed(c net.Conn) bool {
	if len(b.cfg.AllowClients) == 0 {
		return true
	}
	var ip netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap().WithZone("")
	}
	if ip.IsLoopback() {
		return true
	}
	for _, p := range b.cfg.AllowClients {
		if p.Contains(ip) {
			return true
		}
	}
	now := time.Now().UnixNano()
	if last := b.refused.Load(); now-last > int64(time.Second) && b.refused.CompareAndSwap(last, now) {
		b.log.Warn("backend: client refused: not in the allow-list", "client", c.RemoteAddr().String(), "listen", c.LocalAddr().String())
	}
	return false
}
