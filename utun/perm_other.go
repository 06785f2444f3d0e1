//go:build !linux

package utun

import (
	"errors"
	"os"
)

// CheckKernel says whether this process may create kernel TUN interfaces:
// on macOS (utun control sockets) that takes root.
func CheckKernel() error {
	if os.Geteuid() != 0 {
		return errors.New("utun: kernel TUN interfaces need root")
	}
	return nil
}
