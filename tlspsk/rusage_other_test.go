//go:build !unix

package tlspsk

import "time"

func processCPU() time.Duration { return 0 }
