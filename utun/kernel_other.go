//go:build !linux && !darwin

package utun

import (
	"errors"

	"golang.zx2c4.com/wireguard/tun"
)

// errNotSupported is returned by the kernel TUN on unsupported platforms.
var errNotSupported = errors.New("utun: kernel TUN is not supported on this platform")

func createKernel(Config) (tun.Device, string, error) { return nil, "", errNotSupported }
