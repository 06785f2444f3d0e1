package sim

import (
	"net/netip"
)

// NCMConfig emulates the links a real iPhone brings up on a host: the USB
// Ethernet function (CDC-NCM), where the untrusted RSD listens on port 58783
// of the device's link-local address and _remoted._tcp is answered over
// mDNS (discovery.md §2), and optionally a Wi-Fi link, where RPPairing is
// served and _remotepairing._tcp answered (§3). The device lives in a
// network namespace of its own; each link is a veth pair whose host end
// appears in HostNetNS. Linux only, needs root.
type NCMConfig struct {
	// HostNetNS is the path of the namespace where the host ends appear
	// (/proc/<pid>/ns/net, /run/netns/<name>); "" is the simulator's own.
	HostNetNS string
	// HostInterface names the host end of the USB link; "" means
	// "simncm<index>". At most 15 bytes.
	HostInterface string
	// WiFi adds the Wi-Fi link; WiFiInterface names its host end ("" means
	// "simwlan<index>").
	WiFi          bool
	WiFiInterface string
}

// RSDPort is the untrusted RSD's port on the USB-NCM link (pmd3 RSD_PORT,
// go-ios: rsd.md §1).
const RSDPort = 58783

// hostLinkAddr is the host end's address on every emulated link; each link
// is its own scope, so they may share it.
var hostLinkAddr = netip.MustParseAddr("fe80::1")

// eui64 forms the link-local address of a MAC (RFC 4291 appendix A), the
// way the device derives its own.
func eui64(mac []byte) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8] = mac[0] ^ 0x02
	a[9], a[10] = mac[1], mac[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a)
}
