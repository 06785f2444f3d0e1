//go:build !linux

package utun

import "os"

// CanCreateKernel reports whether this process may create kernel TUN
// interfaces: on macOS (utun control sockets) that takes root.
func CanCreateKernel() bool { return os.Geteuid() == 0 }
