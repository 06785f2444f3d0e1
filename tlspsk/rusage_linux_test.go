//go:build linux

package tlspsk

import (
	"syscall"
	"time"
)

// threadCPU is the user+system CPU time of the calling OS thread; the
// caller has locked its goroutine to the thread (runtime.LockOSThread).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
