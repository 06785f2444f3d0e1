// Package coredevice speaks the CoreDevice request envelope that the
// developer-disk-image services of iOS 17+ (com.apple.coredevice.appservice,
// com.apple.coredevice.deviceinfo, …) take over RemoteXPC, in both roles.
// The services themselves are its sub-packages: appservice, deviceinfo and
// openstdio (the raw stdio socket that launches name). The wire format and
// iosmux's choices are docs/protocols/coredevice.md.
//
// Every invocation is one XPC request on the root channel, answered on the
// reply channel with the same message id (coredevice.md §2):
//
//	host                                             device
//	{CoreDevice.featureIdentifier: …feature.listapps,
//	 CoreDevice.action: {}, CoreDevice.input: {…},
//	 CoreDevice.invocationIdentifier: <uuid>, …} ──▶
//	          ◀── {CoreDevice.output: <any>}       success
//	          ◀── {CoreDevice.error: {domain, code, userInfo}}   failure
//
// A Client sends invocations on one connection it keeps (pymobiledevice3,
// go-ios and idevice do) or on a fresh connection each (appium), and
// refuses, before sending, a feature the service's RSD entry does not list
// (the feature gate, coredevice.md §2.4). Replies' errors are *Error, which
// errors.Is matches against the sentinels (ErrNotInstalled, …).
//
// A Server answers invocations on every connection it is given, for the
// features registered with Handle; it lists them for the RSD entry
// (Properties) and answers the rest with CoreDevice.ActionError 2.
package coredevice
