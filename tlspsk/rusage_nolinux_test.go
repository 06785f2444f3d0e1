//go:build !linux

package tlspsk

import "time"

func threadCPU() time.Duration { return 0 }
