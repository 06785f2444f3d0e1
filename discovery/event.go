package discovery

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// Kind says whether a device appeared or went away.
type Kind int

// Event kinds.
const (
	Attached Kind = iota + 1
	Detached
)

func (k Kind) String() string {
	switch k {
	case Attached:
		return "attached"
	case Detached:
		return "detached"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Conn is how the device is reached.
type Conn string

// Connection kinds.
const (
	ConnUsbmux Conn = "usbmux"  // through usbmuxd (USB or its network devices)
	ConnUSBNCM Conn = "usb-ncm" // the USB-Ethernet (CDC-NCM) link, RSD on _remoted._tcp
	ConnWiFi   Conn = "wifi"    // Wi-Fi: RemotePairing or mobdev2 lockdown
)

// Source names the monitor that saw the device (pymobiledevice3's four
// monitors, discovery.md §1).
type Source string

// Sources.
const (
	SourceUsbmux        Source = "usbmux"
	SourceNCM           Source = "ncm"
	SourceRemotePairing Source = "remotepairing"
	SourceMobdev2       Source = "mobdev2"
)

// Event is one sighting of a device appearing (Attached) or going away
// (Detached). A Detached event repeats the fields of its Attached event.
type Event struct {
	Kind   Kind
	Source Source
	Conn   Conn
	// UDID as the source reported it; empty when the source cannot know it
	// without a handshake (USB-NCM, Wi-Fi) and no Identify hook was given.
	UDID string
	// Addr is the device's address and port on NCM and Wi-Fi paths
	// (link-local addresses carry the interface as zone); invalid for
	// usbmux.
	Addr netip.AddrPort
	// Addrs are all addresses the device advertised (mDNS sources), Addr's
	// among them.
	Addrs     []netip.Addr
	Interface string

	// usbmuxd facts (SourceUsbmux).
	DeviceID       uint32
	ConnectionType string // "USB" or "Network"
	ProductID      int

	// mDNS facts: the instance name and TXT strings; WiFiMAC is the
	// mobdev2 instance's "<mac>@" prefix.
	Instance string
	Text     []string
	WiFiMAC  string
}

// Key identifies the sighting (not the device): the same device seen by two
// sources, or on two links, has two keys. A Detached event has the key of
// the Attached event it ends.
func (e Event) Key() string {
	switch e.Source {
	case SourceUsbmux:
		return fmt.Sprintf("usbmux/%d", e.DeviceID)
	default:
		return string(e.Source) + "/" + e.Interface + "/" + e.Instance
	}
}

// rank orders the ways to reach a device, best first (discovery.md §7.2, an
// iosmux choice): usbmux USB, USB-NCM, usbmux Network, mobdev2, Wi-Fi
// RemotePairing.
func (e Event) rank() int {
	switch {
	case e.Source == SourceUsbmux && e.ConnectionType != "Network":
		return 0
	case e.Source == SourceNCM:
		return 1
	case e.Source == SourceUsbmux:
		return 2
	case e.Source == SourceMobdev2:
		return 3
	default:
		return 4
	}
}

func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", e.Kind, e.Source, e.UDID)
	if e.Addr.IsValid() {
		fmt.Fprintf(&b, " %s", e.Addr)
	}
	if e.DeviceID != 0 {
		fmt.Fprintf(&b, " device %d (%s)", e.DeviceID, e.ConnectionType)
	}
	return b.String()
}

// Monitor is one discovery source. Run reports events through emit until
// ctx ends (it then returns ctx's error) or it fails for good. emit is
// called from Run's goroutine, one call at a time, and must not block for
// long.
type Monitor interface {
	Run(ctx context.Context, emit func(Event)) error
}

// NormalizeUDID is the identity form of a UDID (discovery.md §7.2): upper
// case without dashes, so the undashed serial a Linux usbmuxd reports
// (pymobiledevice3 issue #1388) and the dashed lockdown UniqueDeviceID
// compare equal.
func NormalizeUDID(udid string) string {
	return strings.ToUpper(strings.ReplaceAll(udid, "-", ""))
}

// SameUDID reports whether a and b name the same device.
func SameUDID(a, b string) bool {
	return a != "" && NormalizeUDID(a) == NormalizeUDID(b)
}
