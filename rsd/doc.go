// Package rsd implements RemoteServiceDiscovery (docs/protocols/rsd.md §2)
// in both roles over a caller's net.Conn: the RSD Handshake that describes a
// device and lists its services. Lockdown services reached over RSD (names
// ending in ".shim.remote", rsd.md §4.2) speak lockdown's framing after
// RSDCheckin, so both roles of that are in package lockdown (ShimClient,
// ShimServer).
//
// RSD port (RemoteXPC, package xpc):
//
//	host                                    device
//	h2c set-up (xpc.Client)  <------------> mirrors (xpc.Server)
//	Handshake{UUID: host id} ----------->   (optional; pmd3, idevice)
//	                         <-----------   Handshake{Properties, Services, UUID}
//	                                        (stream 1, flags 0x101, id 2)
//
// The host's UUID must be one stable value per host (iOS 27.2 closes every
// advertised port when a peer presents a new one): LoadOrCreateHostUUID keeps
// it on disk. The device's UUID must be a fresh random v4 per boot (an
// all-zero one makes CoreDeviceService drop the connection).
package rsd
