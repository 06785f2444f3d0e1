// Package discovery reports iPhones appearing and going away as typed
// events (Attached / Detached with UDID, connection kind, address and
// interface), from the four sources pymobiledevice3's tunneld watches
// (discovery.md §1):
//
//   - UsbmuxMonitor: usbmuxd Listen events (NewUsbmuxMonitor over a
//     usbmux.Client), iOS 17.4+ CoreDeviceProxy path;
//   - NCMMonitor: USB-NCM links. A link watcher (netlink RTMGRP_LINK and
//     RTMGRP_IPV6_IFADDR on Linux, polling elsewhere) reports interfaces that
//     gain an IPv6 link-local address; each is browsed for _remoted._tcp
//     (package mdns) and the device there reported, until the link goes;
//   - BrowseMonitor for _remotepairing._tcp (Wi-Fi RemotePairing) and
//     _apple-mobdev2._tcp (lockdown over Wi-Fi), browsed every 5 s.
//
// Run drives any set of monitors, restarting failed ones with retry.Backoff;
// Tracker folds their events into one entry per device (normalised UDID,
// so Linux usbmuxd's undashed serial and the dashed UDID meet) and picks
// the preferred path (discovery.md §7).
//
// Typical flow for a USB-attached iOS 17.0–17.3 device:
//
//	kernel: RTM_NEWLINK enx…, RTM_NEWADDR fe80::…%enx…   → NCMMonitor
//	host → ff02::fb%enx…: PTR? _remoted._tcp.local.
//	phone → PTR iPhone._remoted._tcp + SRV :58783 + AAAA fe80::…
//	Identify (the daemon's RSD handshake) → UDID
//	emit Attached{Source: ncm, Conn: usb-ncm, Addr: [fe80::…%enx…]:58783}
//	kernel: RTM_DELLINK enx… → emit Detached
//
// Identities on NCM and Wi-Fi need a handshake (RSD, pair-verify, lockdown)
// that belongs to the layers above; monitors take an IdentifyFunc for it.
package discovery
