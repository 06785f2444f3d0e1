// Package establish brings tunnels up: every path of tunnel.md §1 in both
// roles, ending where package tunnel takes over (CDTunnel, the TUN, the
// pump).
//
// The host side has one entry, Establish, which tunneld's manager,
// start-tunnel and the backend's simulated device all call with a sighting
// (a discovery.Event) and Options; it picks the path from the sighting's
// source and returns a running *Tunnel:
//
//	usbmux         P1: a lockdown session with usbmuxd's record,
//	               StartService CoreDeviceProxy through usbmuxd, the
//	               service TLS (coredeviceproxy.go); without a trusted
//	               record lockdown.EnsurePaired first (the Trust dialog)
//	mobdev2        P1 over Wi-Fi lockdown, with a classic record from
//	               Options.LockdownRecords (coredeviceproxy.go)
//	ncm            P2: untrusted RSD → tunnel service (RemoteXPC) →
//	               pair-verify (or pair-setup first, Options.PairRSD) →
//	               createListener → TCP+TLS-PSK or QUIC (remotepairing.go,
//	               quic.go)
//	remotepairing  P3: the same over RPPairing TCP (network)
//
// A Tunnel owns the pump, the TUN and the connections that must stay open
// with it (tunnel.md §7), and closes them in order. Failures are *Error
// values naming the device and the step.
//
// Server (server.go) is the device side of the same paths for the
// simulator and the backend: CoreDeviceProxyService for lockdown, and
// CreateListener for the pairing device role, answering tcp with a
// TLS-PSK listener and quic with a QUIC listener, both feeding CDTunnel
// sessions of a tunnel.Server.
//
// QUIC (iOS 17.0–18.1): an RSA-2048 client key announced in
// createListener, its self-signed certificate, ALPN
// RemotePairingTunnelProtocol, a 1024-byte padding DATAGRAM, CDTunnel on the
// first stream, then one IPv6 packet per DATAGRAM; idle timeout 30 s with
// PINGs every 15 s. This package is the only one that imports quic-go.
package establish
