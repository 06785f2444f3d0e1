// Package sim is the simulated iPhone: the device roles of every protocol
// package composed into one device that third-party clients known to work
// with real iPhones accept unchanged (tunnel.md §11,
// usbmux.md §5, lockdown.md §8, remotepairing.md §9, rsd.md §5,
// discovery.md §9).
//
// # A device
//
// Each Device has a stable Identity (UDID, ECID, ProductType, DeviceName,
// serial, RemotePairing keys) derived from a seed and an index and kept in
// a state directory, and a Profile (17.0, 17.4, 18.2, 27.2 or any later
// version) that fixes OSVersion/BuildVersion and the tunnel paths it
// offers. While it runs it exposes:
//
//	usbmuxd (Fleet's UNIX socket)      ListDevices/Listen/Connect, pair records
//	└ lockdownd on 62078               values, Pair, StartSession (TLS), StartService
//	  └ CoreDeviceProxy (iOS ≥ 17.4)   P1: service TLS → CDTunnel → tunnel
//	untrusted RSD (loopback TCP, or    Handshake with the iOS 17 untrusted table
//	  [fe80::…%ncm]:58783 + _remoted)
//	└ …untrusted.tunnelservice         P2: RemotePairing (Trust dialog) →
//	                                   createListener tcp → TLS-PSK → CDTunnel
//	                                   (or quic → QUIC datagrams, iOS < 18.2)
//	network pairing (RPPairing/TCP,    P3: the same over RPPairing
//	  + _remotepairing on the Wi-Fi link)
//	tunnel (gVisor stack, ULA /64;     trusted RSD on serverRSDPort:
//	  kernel TUNs in a namespace of    lockdown shims (RSDCheckin, GetValue),
//	  its own with DeviceEndKernel)    mobile_image_mounter, amfi, AFC,
//	                                   house_arrest, installation_proxy and
//	                                   the zip conduit (all also through
//	                                   lockdownd's StartService),
//	                                   openstdiosocket while the DDI is
//	                                   mounted, byte sink, byte source, echo
//
// Only services the simulator serves are listed. Developer Mode, the
// mounter's nonce and kept manifests live in the state directory
// (developer.go; docs/protocols/services.md has the SIM decisions), and a
// fleet can serve the DDI signing stand-in (FleetConfig.TSSAddr). So do
// the device's files (Media/, AFC's root) and installed apps (apps/, with
// their bundles and data containers; apps.go, docs/protocols/afc.md and
// docs/protocols/instproxy.md).
//
// Ports other than lockdown's 62078 and NCM's 58783 are chosen per boot;
// a reboot also draws a new BootSessionUUID and RSD UUID.
//
// # Lifecycle and faults
//
//	New ──▶ plugged ──Unplug──▶ unplugged ──Replug──▶ plugged
//	           │                    │
//	           └──Reboot(N)──▶ down ┘──(N later)──▶ plugged (or unplugged)
//
// Stall, Reset, Garbage and SetTrust act on every connection or pairing
// of the device at once; they are implemented by wrapping every accepted
// connection (conn.go), so protocol code is unaware of them. Realism
// (tunnel packet drops above a size, read-boundary sensitivity, a USB link
// rate) is set per device.
//
// Fleet runs N devices behind one usbmuxd socket with a control endpoint
// (control.go); `iosmux sim` and `iosmux tunneld --simulate N` use it.
//
// The device side of each tunnel path (CoreDeviceProxy service, the
// createListener answer with its TLS-PSK or QUIC listener) is
// establish.Server; sim gives it the device's surfaces to listen on and
// tracks the connections it accepts.
package sim
