//go:build !unix

package mdns

import "syscall"

// reuseControl: address reuse is left to the platform's defaults.
func reuseControl(network, address string, c syscall.RawConn) error { return nil }
