package reach

import "strings"

// Kind is how a service is reached over RSD (services.md §1.1).
type Kind int

const (
	// Shim is a lockdown service behind RSD: the host sends RSDCheckin and
	// reads two replies, then the service's own protocol follows in clear.
	Shim Kind = iota
	// XPC is a RemoteXPC service: h2c set-up, then XPC messages.
	XPC
	// Raw speaks its own byte protocol from the first byte; nothing is
	// exchanged first. Raw services claim UsesRemoteXPC in their RSD entry,
	// so they are recognised by name.
	Raw
)

func (k Kind) String() string {
	switch k {
	case Shim:
		return "shim"
	case XPC:
		return "xpc"
	case Raw:
		return "raw"
	}
	return "Kind(?)"
}

// Names names one device service by both of its names. RSD is the name
// in the trusted RSD Handshake (reached through a tunnel or anything that
// serves RSD, such as iosmux's backend); Lockdown is the name lockdownd's
// StartService takes (reached through usbmuxd, also on iOS 17+: go-ios and
// libimobiledevice use it). Either may be empty when the service has no
// such name.
type Names struct {
	RSD      string
	Lockdown string
}

// String is the RSD name, or the lockdown name when there is none.
func (s Names) String() string {
	if s.RSD != "" {
		return s.RSD
	}
	return s.Lockdown
}

// Kind is how the RSD name is reached.
func (s Names) Kind() Kind { return KindOf(s.RSD) }

// rawServices speak their protocol from the first byte although their RSD
// entries say UsesRemoteXPC.
var rawServices = map[string]bool{
	DebugProxy.RSD:      true,
	OpenStdioSocket.RSD: true,
}

// KindOf chooses the protocol by RSD name, never by the entry's
// UsesRemoteXPC alone: names ending in ".shim.remote" and the remote
// lockdown services are shims, the known raw services are raw, everything
// else is RemoteXPC.
func KindOf(rsdName string) Kind {
	switch {
	case strings.HasSuffix(rsdName, ".shim.remote"), rsdName == LockdownTrusted.RSD, rsdName == LockdownUntrusted.RSD:
		return Shim
	case rawServices[rsdName]:
		return Raw
	}
	return XPC
}

// ShimName is the RSD name of a lockdown service behind RSD, the form
// go-ios falls back to when the plain name is not listed.
func ShimName(lockdownName string) string { return lockdownName + ".shim.remote" }

// The services of iOS 17+ developer work. Developer-disk-image services
// (appservice, deviceinfo, openstdiosocket, debugproxy) are listed only
// while the DDI is mounted.
var (
	// Lockdown over RSD: RSDCheckin, then lockdown requests without a
	// session (QueryType, GetValue).
	LockdownTrusted   = Names{RSD: "com.apple.mobile.lockdown.remote.trusted"}
	LockdownUntrusted = Names{RSD: "com.apple.mobile.lockdown.remote.untrusted"}

	Mounter = Names{RSD: "com.apple.mobile.mobile_image_mounter.shim.remote", Lockdown: "com.apple.mobile.mobile_image_mounter"}
	AMFI    = Names{RSD: "com.apple.amfi.lockdown.shim.remote", Lockdown: "com.apple.amfi.lockdown"}

	InstallationProxy = Names{RSD: "com.apple.mobile.installation_proxy.shim.remote", Lockdown: "com.apple.mobile.installation_proxy"}
	AFC               = Names{RSD: "com.apple.afc.shim.remote", Lockdown: "com.apple.afc"}
	ZipConduit        = Names{RSD: "com.apple.streaming_zip_conduit.shim.remote", Lockdown: "com.apple.streaming_zip_conduit"}
	SyslogRelay       = Names{RSD: "com.apple.syslog_relay.shim.remote", Lockdown: "com.apple.syslog_relay"}
	OSTraceRelay      = Names{RSD: "com.apple.os_trace_relay.shim.remote", Lockdown: "com.apple.os_trace_relay"}
	Heartbeat         = Names{RSD: "com.apple.mobile.heartbeat.shim.remote", Lockdown: "com.apple.mobile.heartbeat"}
	HouseArrest       = Names{RSD: "com.apple.mobile.house_arrest.shim.remote", Lockdown: "com.apple.mobile.house_arrest"}

	NotificationProxy         = Names{RSD: "com.apple.mobile.notification_proxy.shim.remote", Lockdown: "com.apple.mobile.notification_proxy"}
	InsecureNotificationProxy = Names{RSD: "com.apple.mobile.insecure_notification_proxy.shim.remote", Lockdown: "com.apple.mobile.insecure_notification_proxy"}
	CrashReportMover          = Names{RSD: "com.apple.crashreportmover.shim.remote", Lockdown: "com.apple.crashreportmover"}
	CrashReportCopyMobile     = Names{RSD: "com.apple.crashreportcopymobile.shim.remote", Lockdown: "com.apple.crashreportcopymobile"}

	InstallCoordinationProxy = Names{RSD: "com.apple.remote.installcoordination_proxy"}
	AppService               = Names{RSD: "com.apple.coredevice.appservice"}
	DeviceInfo               = Names{RSD: "com.apple.coredevice.deviceinfo"}
	OpenStdioSocket          = Names{RSD: "com.apple.coredevice.openstdiosocket"}
	// DebugProxy's lockdown name is the pre-iOS 17 debugserver proxy.
	DebugProxy = Names{RSD: "com.apple.internal.dt.remote.debugproxy", Lockdown: "com.apple.debugserver.DVTSecureSocketProxy"}
)
