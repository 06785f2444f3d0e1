// Package amfi speaks the amfi lockdown service (Developer Mode) in both
// roles, over a connection to the service (services/reach opens one by
// RSD name, com.apple.amfi.lockdown.shim.remote, or lockdown name,
// com.apple.amfi.lockdown). services.md §4 has the details.
//
// Every request is one lockdown-framed plist {action: n}, answered by one
// plist; hosts open a connection per action (pmd3, go-ios), the device
// also serves several on one:
//
//	host                              device
//	{action: 0} reveal ─────────────▶
//	             ◀──────────────────── {success: true}   (switch shown in Settings)
//	{action: 1} arm ────────────────▶
//	             ◀──────────────────── {success: true}   then it reboots
//	                                   or {Error: "Device has a passcode set"}
//	… the device comes back …
//	{action: 2} accept ─────────────▶
//	             ◀──────────────────── {success: true}   Developer Mode is on
//	{action: 3} status ─────────────▶
//	             ◀──────────────────── {success: true, status: bool}
//
// The status is also a lockdown value (com.apple.security.mac.amfi /
// DeveloperModeStatus, read through reach.ValueReader) and the mounter's
// QueryDeveloperModeStatus. Enable runs the whole arm, reboot, accept
// sequence with progress.
package amfi
