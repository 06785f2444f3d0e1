// Package rsdapi serves the HTTP APIs that tell clients where each device's
// RemoteServiceDiscovery (RSD) endpoint is, over one tunnel table the daemon
// owns (the Registry interface declared here):
//
//   - PMD3Handler: pymobiledevice3's `remote tunneld` API (port 49151),
//     byte for byte: GET /, /hello, /start-tunnel, /cancel, /clear_tunnels,
//     /shutdown and GET/POST/DELETE /upstream (federation), plus /metrics.
//   - GoIOSHandler: the go-ios tunnel agent API (port 60105).
//   - AppiumHandler: appium-ios-remotexpc's tunnel registry (port 42314).
//
// A typical exchange with pymobiledevice3's client:
//
//	client                                  tunneld
//	GET /start-tunnel?udid=U           →    (Registry.StartTunnel blocks)
//	                                   ←    200 {"interface": "utun5", "port": 64337, "address": "fd7b::1"}
//	GET /                              →    (Registry.Tunnels, then upstreams in parallel)
//	                                   ←    200 {"U":[{"tunnel-address":"fd7b::1","tunnel-port":64337,"interface":"usbmux-U-USB"}]}
//	then RSD handshake to [fd7b::1]:64337 through the tunnel
//
// Security: the APIs have no authentication, as in the references. Requests
// whose Host is not an IP literal, "localhost" or an allowed name are refused
// (DNS rebinding), as are cross-origin browser requests (Origin,
// Sec-Fetch-Site); bodies are bounded. See guard.go.
//
// Facts rest on docs/protocols/tunneld-api.md and the reference sources it
// names: pymobiledevice3 tunneld/server.py, go-ios ios/tunnel/tunnel_api.go and
// appium-ios-remotexpc src/lib/tunnel/tunnel-registry-server.ts.
package rsdapi
