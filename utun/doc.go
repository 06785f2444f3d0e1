// Package utun provides the host's end of a tunnel as a tun.Device
// (wireguard-go's interface, reused unchanged): a kernel TUN interface configured
// from the CDTunnel handshake (tunnel.md §9; rtnetlink on Linux, utun ioctls
// on macOS), or, without root, a userspace gVisor stack (Netstack) with a
// DialContext and listeners, plus a Forwarder that exposes device ports on
// 127.0.0.1 and a PortRelay that exposes a set of them at the same ports of
// one local address. The simulated iPhone uses the same Netstack as its own stack.
//
// Order of a kernel interface's setup, as pmd3's: create → address (no DAD)
// → MTU → up → (peer route when the peer is off-prefix). Closing the device
// deletes the interface.
package utun
