//go:build !linux

package netns

import (
	"errors"
	"os/exec"
	"testing"
)

// isolate makes cmd fail at Start: only Linux has the network namespaces
// the interop tests rely on.
func isolate(cmd *exec.Cmd) {
	cmd.Err = errors.New("interop: a network namespace of its own needs Linux")
}

// Link fails t: veth pairs and network namespaces are Linux's.
func Link(t testing.TB, a, addrA, b, addrB string) {
	t.Helper()
	t.Fatal("interop: a veth pair in a network namespace needs Linux")
}
