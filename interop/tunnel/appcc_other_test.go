//go:build !linux

package tunnel_test

import (
	"fmt"
	"os"
	"syscall"
)

// appDialControl: choosing a congestion control needs Linux's
// TCP_CONGESTION.
func appDialControl(_, _ string, _ syscall.RawConn) error {
	if cc := os.Getenv(appCCEnv); cc != "" {
		return fmt.Errorf("%s=%s: needs Linux", appCCEnv, cc)
	}
	return nil
}
