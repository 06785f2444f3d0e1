// Package zipconduit speaks streaming_zip_conduit, the install path Xcode
// and go-ios use, in both roles, over a connection to the service
// (services/reach opens one by RSD name,
// com.apple.streaming_zip_conduit.shim.remote, or lockdown name,
// com.apple.streaming_zip_conduit). docs/protocols/zipconduit.md has the
// details.
//
// The host sends one plist, then the app as a stream of zip local-file
// entries (stored, sizes in each header, no central directory), and the
// device unpacks as the bytes arrive and installs:
//
//	host                                          device
//	{InitTransfer: MediaSubdir, …} ─────────────▶
//	META-INF/, META-INF/com.apple.ZipMetadata.plist,
//	Payload/<x>.app/… entries, "PK\x01\x02" ────▶
//	             ◀─────────────────────────────── {InstallProgressDict: {PercentComplete, Status}} …
//	             ◀─────────────────────────────── {Status: DataComplete}
//	                                              or an Error (in the dict or at the top)
package zipconduit
