package tunnel_test

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// appDialControl sets the congestion control appCCEnv names on the
// application's socket before it connects (set later, a socket keeps the
// pacing BBR set up).
func appDialControl(_, _ string, rc syscall.RawConn) error {
	cc := os.Getenv(appCCEnv)
	if cc == "" {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("%s=%s: %w", appCCEnv, cc, serr)
	}
	return nil
}
