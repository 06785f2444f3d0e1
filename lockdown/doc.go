// Package lockdown speaks lockdownd's protocol in both roles: Client is the
// host side (values, sessions, services, classic pairing), Server plays
// lockdownd for the simulator. The protocol is docs/protocols/lockdown.md,
// and tunnel.md §4 for CoreDeviceProxy.
//
// Every message is a big-endian u32 length and an XML plist dictionary;
// requests carry Label and Request, replies echo Request and report
// failure with Error. A typical host exchange on port 62078:
//
//	host                                          device (lockdownd)
//	QueryType ──────────────────────────────────▶
//	          ◀────────────────────────────────── Type = com.apple.mobile.lockdown
//	GetValue (reduced set before a session) ───▶
//	          ◀────────────────────────────────── Value
//	[no pair record] Pair{PairRecord, HostName} ▶
//	          ◀────────────────────────────────── PairingDialogResponsePending … | EscrowBag
//	StartSession{HostID, SystemBUID} ──────────▶
//	          ◀────────────────────────────────── SessionID, EnableSessionSSL = true
//	══ TLS on the same socket: host presents its certificate from the record ══
//	GetValue / SetValue / StartService{Service} ▶
//	          ◀────────────────────────────────── Port, EnableServiceSSL
//	StopSession ────────────────────────────────▶
//	          ◀────────────────────────────────── Result = Success
//	══ TLS closed both ways (libimobiledevice) or simply dropped; plaintext again ══
//
// A started service is reached on a new connection to Port (a fresh usbmuxd
// Connect); with EnableServiceSSL the host runs a TLS client handshake
// there first. CoreDeviceProxy (iOS 17.4+) keeps the whole stream in TLS
// and carries a CDTunnel, which the tunnel package speaks.
//
// The device accepts either the host or the root certificate of a paired
// host as the TLS client certificate: libimobiledevice presents the root
// (idevice.c, OpenSSL build), go-ios and pymobiledevice3 the host one.
//
// Lockdown over RSD (rsd.md §4.2) is the same framing after one exchange,
// RSDCheckin, with no session and no TLS; ShimClient and ShimServer are its
// roles (shim.go), and PlistConn carries any plist service from there:
//
//	{Label, ProtocolVersion "2", Request "RSDCheckin"} --->
//	                               <--- {Request "RSDCheckin"}
//	                               <--- {Request "StartService"}
//	the service's own protocol from the next byte on
//
// Frames are parsed from []byte with the length bounded (MaxFrameLen);
// every host read has a deadline from the context or the client timeout;
// the device's wait for the next request lasts until the host or
// Server.Close ends it, and the rest of a request has a deadline.
package lockdown
