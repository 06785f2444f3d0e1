// Package housearrest speaks house_arrest, the service that hands an app's
// data container (or its Documents folder) to AFC, in both roles, over a
// connection to the service (services/reach opens one by RSD name,
// com.apple.mobile.house_arrest.shim.remote, or lockdown name,
// com.apple.mobile.house_arrest). docs/protocols/housearrest.md has the
// details.
//
// One command per connection; on success the same connection carries AFC
// from the next byte on, rooted at the container:
//
//	host                                         device
//	{Command: VendContainer, Identifier: id} ──▶
//	             ◀────────────────────────────── {Status: Complete}
//	AFC packets (services/afc) ─────────────────▶
//	             ◀────────────────────────────── AFC replies
//
// or {Error: ApplicationLookupFailed | InstallationLookupFailed} and the
// device hangs up. The host role returns the connection for an AFC client;
// the device role looks the app up and hands the connection to an AFC
// server the caller supplies, so neither imports the afc package.
package housearrest
