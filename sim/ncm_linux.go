package sim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/discovery/mdns"
)

// ncmHost is a device's network namespace and the host namespace its links
// reach into; it lives as long as the device.
type ncmHost struct {
	d     *Device
	cfg   NCMConfig
	phone *netNS
	host  *netNS
}

// ncmLink is one veth link with what the device serves on it.
type ncmLink struct {
	n             *ncmHost
	devIf, hostIf string
	deviceAddr    netip.Addr
	service       string // the host's way in: [addr%hostIf]:port
	resp          *mdns.Responder
}

func newNCMHost(d *Device, cfg NCMConfig) (*ncmHost, error) {
	if cfg.HostInterface == "" {
		cfg.HostInterface = fmt.Sprintf("simncm%d", d.cfg.Index)
	}
	if cfg.WiFiInterface == "" {
		cfg.WiFiInterface = fmt.Sprintf("simwlan%d", d.cfg.Index)
	}
	for _, n := range []string{cfg.HostInterface, cfg.WiFiInterface} {
		if len(n) > 15 {
			return nil, fmt.Errorf("interface name %q longer than 15 bytes", n)
		}
	}
	host, err := openNetNS(cfg.HostNetNS)
	if err != nil {
		return nil, err
	}
	phone, err := newNetNS()
	if err != nil {
		host.Close()
		return nil, err
	}
	n := &ncmHost{d: d, cfg: cfg, phone: phone, host: host}
	// No duplicate address detection inside the phone, so its addresses
	// are usable at once; the host ends get theirs with nodad.
	err = phone.Do(func() error {
		for _, p := range []string{"/proc/sys/net/ipv6/conf/all/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad"} {
			if err := os.WriteFile(p, []byte("0"), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = phone.ip(nil, "link", "set", "lo", "up")
	}
	if err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

func (n *ncmHost) close() {
	n.phone.Close()
	n.host.Close()
}

// link creates the veth pair devIf (phone) — hostIf (host) with fixed
// link-local addresses, both up.
func (n *ncmHost) link(devIf, hostIf string, devAddr netip.Addr) (*ncmLink, error) {
	if err := n.phone.ip([]*os.File{n.host.File()}, "link", "add", devIf, "type", "veth", "peer", "name", hostIf, "netns", "/proc/self/fd/3"); err != nil {
		return nil, err
	}
	l := &ncmLink{n: n, devIf: devIf, hostIf: hostIf, deviceAddr: devAddr}
	steps := []struct {
		ns   *netNS
		args []string
	}{
		{n.phone, []string{"link", "set", devIf, "addrgenmode", "none"}},
		{n.phone, []string{"-6", "addr", "add", devAddr.String() + "/64", "dev", devIf, "nodad"}},
		{n.phone, []string{"link", "set", devIf, "up"}},
		{n.host, []string{"link", "set", hostIf, "addrgenmode", "none"}},
		{n.host, []string{"-6", "addr", "add", hostLinkAddr.String() + "/64", "dev", hostIf, "nodad"}},
		{n.host, []string{"link", "set", hostIf, "up"}},
	}
	for _, s := range steps {
		if err := s.ns.ip(nil, s.args...); err != nil {
			l.down()
			return nil, err
		}
	}
	return l, nil
}

// down withdraws the mDNS records and deletes the link (both ends).
func (l *ncmLink) down() {
	if l.resp != nil {
		l.resp.Close()
	}
	if err := l.n.phone.ip(nil, "link", "del", l.devIf); err != nil {
		l.n.d.log.Warn("sim: deleting link", "udid", l.n.d.id.UDID, "link", l.devIf, "err", err)
	}
}

// listen opens a TCP listener on the device's address of link l. The zone
// is the interface index looked up inside the namespace: the net package
// caches zone names process-wide, and every device has its own "ncm0".
func (l *ncmLink) listen(port uint16) (net.Listener, error) {
	var ln net.Listener
	err := l.n.phone.Do(func() error {
		ifi, err := net.InterfaceByName(l.devIf)
		if err != nil {
			return err
		}
		addr := l.deviceAddr.WithZone(strconv.Itoa(ifi.Index))
		ln, err = net.Listen("tcp6", net.JoinHostPort(addr.String(), strconv.Itoa(int(port))))
		return err
	})
	return ln, err
}

// listenUDP opens a UDP socket on the device's address of link l.
func (l *ncmLink) listenUDP() (net.PacketConn, error) {
	var pc net.PacketConn
	err := l.n.phone.Do(func() error {
		ifi, err := net.InterfaceByName(l.devIf)
		if err != nil {
			return err
		}
		addr := l.deviceAddr.WithZone(strconv.Itoa(ifi.Index))
		pc, err = net.ListenPacket("udp6", net.JoinHostPort(addr.String(), "0"))
		return err
	})
	return pc, err
}

func (l *ncmLink) ports() portOpener { return portOpener{tcp: l.listen, udp: l.listenUDP} }

func (l *ncmLink) advertise(svc mdns.Announcement) error {
	return l.n.phone.Do(func() (err error) {
		l.resp, err = mdns.NewResponder(mdns.ResponderConfig{Interface: l.devIf, Services: []mdns.Announcement{svc}, Logger: l.n.d.log})
		return err
	})
}

func (l *ncmLink) hostService(port uint16) string {
	return net.JoinHostPort(l.deviceAddr.WithZone(l.hostIf).String(), strconv.Itoa(int(port)))
}

func (n *ncmHost) mdnsHost() string { return "iPhone-" + n.d.id.SerialNumber + ".local." }

// upNCM brings up the USB-NCM link of a plug: untrusted RSD on port 58783
// with its services, and the _remoted._tcp answer.
func (n *ncmHost) upNCM(b *boot, p *plug) (_ *ncmLink, err error) {
	l, err := n.link("ncm0", n.cfg.HostInterface, eui64(macBytes(n.d.id.EthernetMAC)))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.down()
		}
	}()
	ln, err := l.listen(RSDPort)
	if err != nil {
		return nil, fmt.Errorf("untrusted RSD on NCM: %w", err)
	}
	if err := b.untrustedRSD(p.scope, ln, surfaceUSB, l.ports()); err != nil {
		return nil, err
	}
	l.service = l.hostService(RSDPort)
	if err := l.advertise(mdns.Announcement{Instance: n.d.id.DeviceName, Type: mdns.ServiceRemoted, Host: n.mdnsHost(),
		Port: RSDPort, Addrs: []netip.Addr{l.deviceAddr}}); err != nil {
		return nil, fmt.Errorf("_remoted._tcp: %w", err)
	}
	return l, nil
}

// upWiFi brings up the Wi-Fi link of a boot: RPPairing and the
// _remotepairing._tcp answer (TXT identifier, authTag, model, ver as
// appium and pmd3 read them, discovery.md §3.1).
func (n *ncmHost) upWiFi(b *boot) (_ *ncmLink, err error) {
	l, err := n.link("wlan0", n.cfg.WiFiInterface, eui64(macBytes(n.d.id.WiFiMAC)))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.down()
		}
	}()
	ln, err := l.listen(0)
	if err != nil {
		return nil, fmt.Errorf("network pairing on Wi-Fi: %w", err)
	}
	port := portOf(ln.Addr())
	if err := b.servePairing(ln, b.tunnelListen(b.scope, surfaceNet, l.ports())); err != nil {
		return nil, err
	}
	l.service = l.hostService(port)
	tag, err := discovery.RemotePairingAuthTag(n.d.id.AltIRK, n.d.id.PairingID)
	if err != nil {
		return nil, errors.Join(errors.New("authTag"), err)
	}
	err = l.advertise(mdns.Announcement{Instance: n.d.id.PairingID[:8], Type: mdns.ServiceRemotePairing, Host: n.mdnsHost(),
		Port: port, Addrs: []netip.Addr{l.deviceAddr},
		Text: []string{"identifier=" + n.d.id.PairingID, "authTag=" + tag, "model=" + n.d.id.ProductType, "ver=24"}})
	if err != nil {
		return nil, fmt.Errorf("_remotepairing._tcp: %w", err)
	}
	return l, nil
}
