// Package dylib is the socket protocol between iosmux and its dylib inside
// macOS CoreDeviceService (CDS), in both roles: Client is iosmux's side,
// Server the dylib's (package dylibtest has a fake dylib built on it, and
// inject/ the real one in C). The protocol is written up in
// docs/protocols/coredevice-bridge.md.
//
// The dylib listens on a Unix stream socket, /tmp/iosmux-cds.<pid>.sock
// (mode 0600, peer uid checked), one per CDS process; iosmux finds the
// sockets and connects to each. Every frame is
//
//	u32be length (of what follows) | u8 version=1 | u8 kind | u16be flags | u64be correlation | payload
//
// with one xpc object as payload, in RemoteXPC's object encoding plus
// handles for objects that cannot leave CDS (xpc.DecodeOptions.Handles).
//
//	dylib (Server)                         iosmux (Client)
//	HELLO {pid, uid, arch, build, hooks} ─▶
//	                                     ◀─ HELLO_ACK {protocol, allow, deviceIds}
//	                                     ◀─ DEVICE_ATTACH / DEVICE_UPDATE / DEVICE_DETACH
//	ACTION_REQUEST {request} ───────────▶   (only allow-listed actions on attached devices)
//	                                     ◀─ ACTION_RESPONSE {disposition, reply, followups}
//	LOG {level, msg} ───────────────────▶
//	ERROR {code, msg} ◀──────────────────▶  then close
//
// The dylib waits at most its deadline (1.5 s by default) for a response
// and otherwise lets CDS's own code run, as it does whenever the socket is
// down: iosmux can only make CDS answer better, never stop it answering.
package dylib
