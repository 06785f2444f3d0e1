// Package tunnel is the per-device tunnel session: the CDTunnel handshake,
// the IPv6 packet pump between a TUN (or userspace stack) and the transport,
// the liveness probe, and the device-side endpoint the simulator uses.
//
// Every path (tunnel.md §1) ends the same way once its transport is up:
//
//	host                                          device
//	 | "CDTunnel" u16be N {"type":"clientHandshakeRequest","mtu":16000} |
//	 |------------------------------------------------------------------>|
//	 | "CDTunnel" u16be N {"clientParameters":{address,mtu,netmask},     |
//	 |   "serverAddress","serverRSDPort","type":"serverHandshakeResponse"}|
//	 |<------------------------------------------------------------------|
//	 | bare IPv6 packets, back to back, each in its own write            |
//	 |<=================================================================>|
//
// ClientHandshake and ServerHandshake are the two roles of the handshake
// (cdtunnel.go). StreamConn frames packets on a byte stream (P1's lockdown
// TLS, TLS-PSK on P2/P3); other transports (QUIC datagrams) implement
// PacketConn. A Pump then moves packets between a tun.Device and the
// PacketConn: one packet per transport write, host→device packets kept under
// what the device forwards (MSS clamping, Packet Too Big), an ICMPv6 echo
// probe that declares a silent device dead (probe.go), and a teardown that
// closes both sides and waits for every goroutine.
//
// The host side, once a byte-stream transport is up (establishment code):
//
//	pump, params, err := tunnel.StartHost(ctx, conn, tunnel.HostConfig{
//		NewTUN: tunnel.KernelTUN(""), // or a closure around utun.NewNetstack
//	})
//	<-pump.Done() // pump.Err() says why: ErrDead, the transport's error, …
//
// which is ClientHandshake, then utun.CreateKernel with params.ClientPrefix(),
// ServerAddress and MTU, then NewPump over NewStreamConn(conn, params.MTU).
//
// Establishment (establish*.go, quic.go) reaches that point on every path
// of tunnel.md §1 and returns a *Tunnel that owns the pump, the TUN and the
// connections that must stay open (§7):
//
//	P1  StartCoreDeviceProxy(ctx, mux, dev, opt)   usbmuxd → lockdown →
//	    StartService CoreDeviceProxy → service TLS → CDTunnel (iOS ≥ 17.4)
//	P2  StartRSD(ctx, "[fe80::…%if]:58783", opt)   untrusted RSD → tunnel
//	    service (RemoteXPC) → pairing handshake → pair-verify (record from
//	    opt.Records, else ErrNotPaired) → createListener → TCP + TLS-PSK
//	    (key = pair-verify secret) or QUIC → CDTunnel
//	P3  StartRemotePairing(ctx, "host:port", opt)  the same over RPPairing
//
// Establish(ctx, ev, mux, opt) picks the path from a discovery.Event (the
// manager's Establisher).
//
// QUIC (iOS 17.0–18.1): an RSA-2048 client key announced in createListener,
// its self-signed certificate, ALPN RemotePairingTunnelProtocol, a 1024-byte
// padding DATAGRAM, CDTunnel on the first stream, then one IPv6 packet per
// DATAGRAM; idle timeout 30 s with PINGs every 15 s. Failures are *Error
// values naming the device and the step. Tunnel.Done/Err/Close/Stats make
// it a manager Link.
//
// Endpoint (endpoint.go) is the device side of the same paths for the
// simulator: CoreDeviceProxyService for lockdown, and CreateListener for
// the pairing device role, answering tcp with a TLS-PSK listener and quic
// with a QUIC listener, both feeding CDTunnel sessions of a Device.
//
// Device (device.go) is the simulated iPhone's end: a gVisor stack holding
// the device address, where services listen, serving one Session per
// transport, with Faults that reproduce the real forwarder's limits. Each
// session is a point-to-point link: replies go down the session the peer
// sent from, also when the host used another of its addresses (a tentative
// tunnel address makes Linux do that for a connection opened at once).
//
// Manager (manager.go, manager_loop.go) keeps one tunnel per UDID for the
// tunneld daemon: discovery events go in through Apply, an Establisher
// (Establish above, in production) turns a device's preferred path into a
// Link (*Tunnel or *Pump), and Tunnels lists only links that are up. A link
// that ends, goes silent or loses its path leaves the table at once and is
// rebuilt with back-off and jitter, or at once when the device is attached
// again; Start, Cancel and Clear serve the HTTP API's on-demand requests.
package tunnel
