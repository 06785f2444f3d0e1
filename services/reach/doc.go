// Package reach is how every developer service is reached, once, for all
// the service packages (services/…) and the simulator
// (services.md §1).
//
// A Service has an RSD name and a lockdown name. An Opener turns one into
// a connection positioned at the service's first byte:
//
//	o, _ := reach.NewRSD(ctx, dial, rsdAddr, reach.RSDConfig{HostUUID: id})
//	                      // dial: net.Dialer (kernel TUN, the backend),
//	                      // utun.Netstack.DialContext, utun.PreambleDial
//	o, _ := reach.NewLockdown(ctx, usbmuxClient, udid)   // usbmuxd + StartService (+TLS)
//
//	conn, err := o.Open(ctx, reach.Mounter)   // RSDCheckin done, or StartService and TLS
//	c := mounter.NewClient(conn)              // clients take a connection, not a tunnel
//
// Over RSD the protocol is chosen by name (Kind): a ".shim.remote" name is
// a lockdown service behind RSDCheckin, the known raw services speak from
// the first byte, everything else is RemoteXPC (OpenXPC). ErrNotListed
// says the device does not offer the service by that path.
//
// The device side: ServeRSD runs the set-up a name calls for (answering
// RSDCheckin for a shim) and then a Handler, the same Handler the
// simulator gives lockdownd for StartService, so a service is registered
// once and served both ways (sim.DeviceService.Handler).
//
// Service packages import each other only through this one.
package reach
