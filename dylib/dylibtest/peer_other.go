//go:build !linux && !darwin

package dylibtest

import (
	"errors"
	"net"
)

// peerUID cannot be read here: every peer is refused.
func peerUID(*net.UnixConn) (int, error) {
	return 0, errors.New("dylibtest: peer credentials unsupported on this OS")
}
