// Package usbmux speaks the usbmuxd protocol in both roles: Client is the
// host side every iPhone tool uses to reach a USB (or Wi-Fi-synced) device,
// Server plays usbmuxd for simulated devices. The protocol is
// docs/protocols/usbmux.md.
//
// Every message, in both directions, is a 16-byte little-endian header
// (length including the header, version 1, message 8 = plist, tag) and an
// XML plist. Each client request uses its own socket:
//
//	client                                   usbmuxd
//	ListDevices ───────────────────────────▶
//	            ◀─────────────────────────── {DeviceList: [{DeviceID, Properties}…]}
//	ReadBUID    ───────────────────────────▶
//	            ◀─────────────────────────── {BUID}
//	ReadPairRecord{PairRecordID} ──────────▶
//	            ◀─────────────────────────── {PairRecordData} | Result 2
//	SavePairRecord / DeletePairRecord ─────▶
//	            ◀─────────────────────────── Result 0  (+ Paired to listeners)
//	Listen      ───────────────────────────▶
//	            ◀─────────────────────────── Result 0
//	            ◀─────────────────────────── Attached (one per present device, tag 0)
//	            ◀─────────────────────────── Attached / Detached / Paired … (live)
//	Connect{DeviceID, PortNumber=swap16(port)} ▶
//	            ◀─────────────────────────── Result 0 | 2 (bad device) | 3 (refused)
//	after Result 0 the socket is a raw byte pipe to the device port.
//
// Replies echo the request's tag. Decoding works on []byte with every
// length bounded (MaxMessageLen); network reads carry a deadline or a
// context, except a server's wait for the next request, which lasts until
// the client or Server.Close ends it. Watch keeps a Listen stream alive
// across usbmuxd restarts with exponential back-off.
package usbmux
