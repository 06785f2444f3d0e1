//go:build !linux

package tunnel

import "testing"

// forEachEnd runs test on the netstack end (the kernel end is Linux's).
func forEachEnd(t *testing.T, test func(t *testing.T, kernel bool)) {
	t.Run("netstack", func(t *testing.T) { test(t, false) })
}
