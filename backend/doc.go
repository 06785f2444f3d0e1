// Package backend is the RemoteXPC endpoint that macOS CoreDeviceService
// (and any other RSD client: go-ios, appium, pymobiledevice3) connects to
// instead of the iPhone's own tunnel RSD, which CoreDeviceService refuses
// on pymobiledevice3's transport (overview.md §4). The backend
// plays the device's side and delegates every real operation to the iPhone
// through iosmux's tunnel; everything it says about the device comes from
// the device.
//
//	client (CoreDeviceService,            backend                      iPhone
//	go-ios, appium)
//	 │ h2c RemoteXPC ─────────▶ RSD on Listen (loopback)
//	 │                           Handshake = device's Properties,
//	 │                           its services at backend ports,
//	 │                           our UUID (fresh per device boot)
//	 │                                    │ one discovery session ───▶ trusted RSD
//	 │                                    │ per tunnel, our stable       (tunnel)
//	 │                                    │ host UUID
//	 │ TCP ──────────────────▶ forwarder of service S ──── relay ─────▶ [dev]:port(S)
//	 │ RemotePairing ────────▶ tunnel service / RPPairing
//	 │                          (the backend's own identity)
//	 │ TLS-PSK tunnel ───────▶ client tunnel stack ─ TCP relay ───────▶ [dev]:port
//
// # Frame order (xpc.md §1.7, overview.md §5.3)
//
// Nothing is sent before the client opens its streams: on accept the
// backend sends SETTINGS and WINDOW_UPDATE (the device does), then answers
// each of the client's set-up frames only after it arrived (HEADERS(1),
// the empty-dictionary mirror, HEADERS(3), the PING mirror, the
// INIT_HANDSHAKE mirror on stream 3), and only then the Handshake on
// stream 1 (message id 2). Sending it earlier makes CoreDeviceService reset
// stream 3 and drop the connection. No RST_STREAM, END_STREAM or GOAWAY
// follows on a healthy connection. rsd.Server over xpc.Server implements
// exactly this; the tests replay CoreDeviceService's captured 204 bytes.
//
// # One RSD peer towards the device (rsd.md §3)
//
// A device serves one RSD discovery session per tunnel, and iOS 27.2 closes
// every advertised port when the peer's UUID changes. So the backend opens
// one session per tunnel with the host's one stable UUID
// (rsd.LoadOrCreateHostUUID), keeps it open, and shares what it read with
// every client; clients' own host Handshakes never reach the device. When
// the session is taken away (another host's session wins the slot) it is
// reopened and the Handshake read again; a changed BootSessionUUID (or,
// without one, a changed device UUID) means the device rebooted: the
// Properties are new, clients get a new random UUID, and every client
// connection of the old boot ends, as a reboot would end them.
//
// A device lists the services a developer disk image brings only in RSD
// sessions opened after the mount, so each client RSD connection is
// answered with a Handshake the backend re-read for it (concurrent ones
// share a re-read); Refresh does the same on request (tunneld's
// refresh-services).
//
// # Forwarders
//
// Each service the device lists gets a listener on Listen's host, opened
// the first time the name appears and kept for the backend's life. A
// connection to it is relayed to wherever the device has the service at
// that moment (one copier per direction, half-close, no buffering beyond
// the copy buffer); a dial that fails makes the backend re-read the
// Handshake and try once more, so a service moved by the device is followed
// without the client noticing.
//
// # Pairing with the backend (remotepairing.md §9.7)
//
// The backend cannot sign as the iPhone, so it has a pairing identity of
// its own per device (Ed25519 seed, identifier, altIRK), stored with the
// hosts paired with it in StateDir/backend-<UDID>.json, mode 0600. The
// handshake a client reads is the device's: the backend reads the device's
// RemotePairing handshake (peerDeviceInfo, deviceOptions, protocol
// versions) once through the tunnel from the device's tunnel service. The
// untrusted tunnel service the device lists in its Handshake points to the
// backend's own; Untrusted serves an RSD listing only that service, and
// Pairing serves RPPairing for the network path (advertised over mDNS as
// _remotepairing._tcp, like a device on Wi-Fi).
//
// # Tunnels through the backend
//
// A paired client's createListener opens a TLS-PSK (or, on iOS < 18.2,
// QUIC) listener on the address the client used. The backend is the
// device's end of that client's CDTunnel: a userspace IPv6 stack per device
// boot (tunnel.Server, a random ULA /64, the backend at ::1, each client
// tunnel at ::2, ::3 …, serverRSDPort = the RSD listener's port). Packets
// are not forwarded as packets: every TCP connection a client opens to ::1
// is terminated in that stack and relayed as a new connection through the
// device's tunnel, which is the address translation (client's ULA ↔ the
// device's tunnel address) with ports mapped as on Listen:
//
//	::1:rsdPort          the backend's RSD (the same Handshake)
//	::1:tunnel service   the backend's pairing
//	::1:forwarder port   that forwarder's service on the device
//	::1:other port       the same port on the device
//
// Terminating TCP rather than rewriting packets keeps the device's one RSD
// peer (a client's RSD session never reaches the device), lets each side
// keep its own MTU and TCP state, and answers pings and the client's probe
// locally. The device's tunnel is never shared at the packet level.
//
// # Wire log
//
// With Config.WireLog every connection the backend serves or opens is
// tapped: each HTTP/2 frame and each decoded XPC message, per connection,
// as JSON lines in a size-rotated file (wirelog.go), for studying what
// CoreDeviceService says.
package backend
