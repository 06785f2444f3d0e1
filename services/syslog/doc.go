// Package syslog speaks com.apple.syslog_relay in both roles, over a
// connection to the service (services/reach opens one by RSD name,
// com.apple.syslog_relay.shim.remote, or lockdown name,
// com.apple.syslog_relay). docs/protocols/syslog.md has the details.
//
// The host sends nothing; the device streams text lines until the host
// hangs up:
//
//	host                              device
//	(RSDCheckin or StartService + TLS)
//	                ◀──────────────── "Jan  2 03:04:05 iPhone Demo[4321] <Notice>: hi\n\0"
//	                ◀──────────────── "Jan  2 03:04:06 iPhone SpringBoard[58] <Error>: caf\M-C\M-)\n\0"
//	                ◀──────────────── …
//	close ─────────▶
//
// Lines carry vis(3) escapes for bytes that are not printable ASCII
// (AppendVis, AppendUnvis). Client reads and parses them (ParseLine into an
// Entry: time, device name, process, image, pid, level, message), Filter
// selects them on the host by process, pid, level and regular expression,
// and Printer writes them plain, coloured or as JSON lines. Serve is the
// device role, fed by a Feed.
package syslog
