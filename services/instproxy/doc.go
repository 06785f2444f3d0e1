// Package instproxy speaks installation_proxy, the iPhone's app
// installer, in both roles, over a connection to the service
// (services/reach opens one by RSD name,
// com.apple.mobile.installation_proxy.shim.remote, or lockdown name,
// com.apple.mobile.installation_proxy). docs/protocols/instproxy.md has
// the protocol.
//
// Each command is one lockdown-framed plist, answered by one or more:
//
//	host                                          device
//	{Command: Browse, ClientOptions} ────────────▶
//	             ◀─────────────────────────────── {Status: BrowsingApplications, CurrentList: [20 apps]} …
//	             ◀─────────────────────────────── {Status: Complete}
//	[package staged through AFC under PublicStaging]
//	{Command: Install, PackagePath} ────────────▶
//	             ◀─────────────────────────────── {PercentComplete: 5, Status: CreatingStagingDirectory} …
//	             ◀─────────────────────────────── {Status: Complete}
//	                                              or {Error, ErrorDescription}
//
// Client is the host role; InstallLocal stages a local package through an
// AFC client and installs it. Server is the device role over a Registry,
// which really installs: it unpacks the package (internal/ipa), reads its
// Info.plist, keeps the bundle and a data container on disk and records
// the app in a file written atomically.
package instproxy
