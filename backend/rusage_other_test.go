//go:build !unix

package backend

import "time"

func processCPU() time.Duration { return 0 }
