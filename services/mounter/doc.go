// Package mounter speaks mobile_image_mounter in both roles, over a
// connection to the service (services/reach opens one by RSD name,
// com.apple.mobile.mobile_image_mounter.shim.remote, or by lockdown name,
// com.apple.mobile.mobile_image_mounter), and runs the personalized DDI
// mount of iOS 17+ end to end (services.md §3).
//
// Every request is a lockdown-framed plist {Command: …}; one connection
// carries any number of them. The personalized mount:
//
//	host                                            device
//	LookupImage {ImageType: Personalized} ────────▶
//	          ◀──────────────────────────────────── {ImageSignature: []}
//	QueryPersonalizationIdentifiers ──────────────▶
//	          ◀──────────────────────────────────── {PersonalizationIdentifiers: {BoardId, ChipID, …}}
//	   (the DDI's build identity for BoardId/ChipID)
//	QueryPersonalizationManifest {SHA-384(image)} ▶
//	          ◀──────────────────────────────────── {ImageSignature: manifest}   offline branch
//	                                                or an error and a closed connection:
//	[new connection] QueryNonce ──────────────────▶
//	          ◀──────────────────────────────────── {PersonalizationNonce}
//	   TSS (package tss) → ApImg4Ticket = manifest
//	ReceiveBytes {ImageSize, ImageSignature} ──────▶
//	          ◀──────────────────────────────────── {Status: ReceiveBytesAck}
//	<ImageSize raw bytes> ─────────────────────────▶
//	          ◀──────────────────────────────────── {Status: Complete}
//	MountImage {ImageSignature, ImageTrustCache} ──▶
//	          ◀──────────────────────────────────── {Status: Complete}
//
// After a mount the device lists the DDI's services in a new RSD
// Handshake. Server is the device role the simulator runs.
package mounter
