// Package afc speaks AFC, the iPhone's file service, in both roles, over
// a connection to the service: services/reach opens one by RSD name
// (com.apple.afc.shim.remote) or lockdown name (com.apple.afc), and
// house_arrest hands one over after a vend. docs/protocols/afc.md has the
// protocol.
//
// Every request is one packet; the device answers each with one packet,
// in order:
//
//	host                                        device
//	READ_DIR path ────────────────────────────▶
//	             ◀──────────────────────────── DATA names
//	FILE_OPEN mode, path ─────────────────────▶
//	             ◀──────────────────────────── FILE_OPEN_RES handle
//	WRITE handle + bytes ─────────────────────▶ (pipelined)
//	WRITE handle + bytes ─────────────────────▶
//	             ◀──────────────────────────── STATUS 0
//	             ◀──────────────────────────── STATUS 0
//	FILE_CLOSE handle ────────────────────────▶
//	             ◀──────────────────────────── STATUS 0
//
// Client is the host role: safe for concurrent use, it pipelines requests
// (bulk transfers keep several chunks in flight) and maps STATUS codes to
// *Error values that answer errors.Is for the fs sentinels. Server is the
// device role over a folder, confined to it through os.Root.
package afc
