// Package tunnel is a running tunnel, both ends: the CDTunnel handshake,
// the IPv6 packet pump between a TUN (or userspace stack) and the
// transport, the liveness probe, and the device's end the simulator and the
// backend use.
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
// The host side, once a byte-stream transport is up (package establish):
//
//	pump, params, err := tunnel.StartClient(ctx, conn, tunnel.ClientConfig{
//		NewTUN: tunnel.KernelTUN(""), // or a closure around utun.NewNetstack
//	})
//	<-pump.Done() // pump.Err() says why: ErrDead, the transport's error, …
//
// which is ClientHandshake, then utun.CreateKernel with params.ClientPrefix(),
// ServerAddress and MTU, then NewPump over NewStreamConn(conn, params.MTU).
//
// Bringing a tunnel up (the paths of tunnel.md §1, both roles) is package
// establish's job; this package is the running tunnel only and imports
// nothing above utun and the TUN library. A QUIC transport reaches the pump
// through Datagrams and DatagramConn (one packet per DATAGRAM frame).
//
// Server (server.go) is the simulated iPhone's end: a gVisor stack holding
// the device address, where services listen, serving one Session per
// transport, with Faults that reproduce the real forwarder's limits. Each
// session is a point-to-point link: replies go down the session the peer
// sent from, also when the host used another of its addresses (a tentative
// tunnel address makes Linux do that for a connection opened at once).
// With ServerConfig.Kernel (Linux, root) the device end is the kernel's
// instead (server_kernel_linux.go): the address and listeners in a network
// namespace of the server's own and a kernel TUN per session, much cheaper
// per byte, for benchmarks that should measure the host; there only each
// host's tunnel address is routed back.
package tunnel
