//go:build !linux

package testkit

import (
	"fmt"
	"syscall"
)

// Congestion fails every dial: choosing a socket's congestion control
// (TCP_CONGESTION) is Linux's.
func Congestion(name string) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error {
		return fmt.Errorf("TCP congestion control %q: needs Linux", name)
	}
}
