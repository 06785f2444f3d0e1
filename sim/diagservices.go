package sim

import (
	"github.com/iosmux/iosmux/services/reach"
)

// The services of the device's logs and reports, each registered once and
// served by both names (services.go: its RSD shim with RSDCheckin, its
// lockdown name through StartService with service TLS). They need no
// developer disk image, so they are listed from boot.
func (g *diagnostics) services() []DeviceService {
	shim := func(s reach.Names, entitlement string, h reach.Handler) DeviceService {
		return DeviceService{Name: s.RSD, Lockdown: s.Lockdown, Entitlement: entitlement, Handler: h}
	}
	return []DeviceService{
		shim(reach.SyslogRelay, LockdownTrusted, g.serveSyslog),
		shim(reach.OSTraceRelay, LockdownTrusted, g.serveOSTrace),
		shim(reach.NotificationProxy, LockdownTrusted, g.serveNotify),
		// Listed on the trusted RSD too, with the untrusted entitlement
		// (notify.md §1).
		shim(reach.InsecureNotificationProxy, LockdownUntrusted, g.serveNotify),
		shim(reach.CrashReportMover, LockdownTrusted, g.serveMover),
		shim(reach.CrashReportCopyMobile, LockdownTrusted, g.serveCopyMobile),
	}
}

// untrustedRSDServices are this part's entries of the untrusted RSD: the
// insecure notification proxy, open before pairing.
func (g *diagnostics) untrustedRSDServices() []DeviceService {
	return []DeviceService{{Name: reach.InsecureNotificationProxy.RSD, Entitlement: LockdownUntrusted, Handler: g.serveNotify}}
}
