// Package debugproxy reaches the device's debugserver — the raw service
// com.apple.internal.dt.remote.debugproxy (iOS 17+, after a developer disk
// image mount), which speaks the GDB remote serial protocol from its first
// byte — in both roles (docs/protocols/debugproxy.md):
//
//   - Forwarder exposes it on a local port for lldb: each connection lldb
//     makes opens a new connection to the device through whatever
//     reach.Opener the caller has (a kernel tunnel, a userspace stack, the
//     backend) and relays the two (utun.Relay).
//   - Conn is the protocol's packet layer in either role: framing,
//     checksums, escapes, run-length encoding, acknowledgements.
//   - Server is the simulated iPhone's debugserver: the subset lldb needs
//     to connect, attach to a process of the simulator's process table,
//     continue it, see it exit, and kill it.
package debugproxy
