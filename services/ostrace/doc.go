// Package ostrace speaks com.apple.os_trace_relay in both roles, over a
// connection to the service (services/reach opens one by RSD name,
// com.apple.os_trace_relay.shim.remote, or lockdown name,
// com.apple.os_trace_relay). docs/protocols/ostrace.md has the details.
//
// Requests are lockdown-framed plists; what the device sends back is
// framed by a marker byte (0x01 reply, 0x02 log record, 0x03 archive
// chunk) and a length:
//
//	host                                   device
//	{Request: PidList} ──────────────────▶
//	             ◀──────────────────────── 01 len {Payload: {"58": {ProcessName: SpringBoard}, …}}
//	{Request: StartActivity, Pid: -1, …} ▶
//	             ◀──────────────────────── 01 len {Status: RequestSuccessful}
//	             ◀──────────────────────── 02 len record, 02 len record, …   until the host closes
//	{Request: CreateArchive} ────────────▶   (on a new connection)
//	             ◀──────────────────────── 01 len {Status: RequestSuccessful}
//	             ◀──────────────────────── 03 len tar bytes, …   then the device closes
//
// ListProcesses is the process list that needs no developer disk image;
// ParseRecord and AppendRecord are the record codec. Server is the device
// role over a Device.
package ostrace
