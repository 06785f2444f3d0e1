//go:build unix && !linux && !darwin

package afc

import "syscall"

// birthNanos: 0 makes statExtra use the modification time.
func birthNanos(*syscall.Stat_t) int64 { return 0 }
