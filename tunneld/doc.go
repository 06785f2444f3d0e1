// Package tunneld is iosmux's drop-in replacement for `pymobiledevice3
// remote tunneld`: it finds every iPhone, keeps exactly one healthy tunnel
// per device and tells clients where each device's RSD is, over
// pymobiledevice3's HTTP API (and, on request, go-ios's agent API and
// appium's tunnel registry) — docs/protocols/tunneld-api.md,
// discovery.md.
//
//	usbmuxd Listen ─┐                                      ┌─ P1 CoreDeviceProxy (autopair)
//	USB-NCM + mDNS ─┤                                      ├─ P2 RSD → RemotePairing → TLS-PSK/QUIC
//	_remotepairing ─┼─▶ discovery.Run ─▶ manager ─▶ establish.Establish ─┤
//	_apple-mobdev2 ─┘     (events)     (one per UDID,        ├─ P3 RemotePairing over Wi-Fi
//	                                    back-off, healing)   └─ P1 over Wi-Fi lockdown
//	                                          │ table
//	                                          ▼
//	              rsdapi: GET / (49151), /tunnels (60105), /remotexpc/tunnels (42314)
//
// The per-UDID manager (manager.go, manager_loop.go) is this package's own;
// the establisher (establish.go) hands each attempt to establish.Establish,
// the one way iosmux brings a tunnel up, and adds what the daemon serves
// next to a tunnel (the catalog, go-ios's userspace proxy, the loopback
// relay). The APIs' vocabulary for a sighting, pymobiledevice3's table key
// and the path labels, is in registry.go next to the API it serves.
//
// Each tunnel is listed only once it is up and its trusted RSD has
// answered (the catalog appium needs is read then); it leaves the listing
// the moment its device is detached or its transport or liveness probe
// fails, and is rebuilt as soon as the device answers again. In userspace
// mode the tunnel lives in our own network stack, which no other process
// can route to: each device gets a loopback address of its own (any
// 127.0.0.0/8 address on Linux) where its RSD port and every port its RSD
// lists are relayed, and pymobiledevice3's and appium's listings give that
// address (loopback.go); go-ios's listing gives the tunnel address with
// go-ios's userspace proxy port. Where the system has only 127.0.0.1
// (macOS without lo0 aliases) the tunnel address is listed, as before,
// and the log says so.
//
// Every RSD session tunneld opens (catalog, refresh-services, pairing over
// the untrusted RSD) presents Config.HostUUID: iOS 27.2 keeps one RSD peer
// per tunnel and closes every service port when a peer presents another
// UUID, so all of this host's sessions share one stable identity.
//
// With Config.Advertise (iosmux tunneld --advertise backend) the listing
// names another RSD in each tunnel's place, reached without the tunnel:
// the daemon hands the tunnel (its RSD address, a dialer through it, a
// channel closed when it ends) to Advertise before listing it, opens no
// catalog session of its own, and lists the advert's address, port and
// live catalog.
//
// Keys, PSKs and pair records are never logged. Package sim is not
// imported here: cmd/iosmux wires the simulated fleet in as a usbmuxd
// address.
package tunneld
