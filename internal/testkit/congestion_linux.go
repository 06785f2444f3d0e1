package testkit

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Congestion is a net.Dialer Control that gives the socket the TCP
// congestion control algorithm name (cubic, bbr, …) before it connects:
// chosen later, a socket keeps the pacing BBR set up. The benchmarks use it
// for the application's socket (docs/perf.md, "the application's
// congestion control").
func Congestion(name string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, name)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("TCP congestion control %q: %w", name, serr)
		}
		return nil
	}
}
