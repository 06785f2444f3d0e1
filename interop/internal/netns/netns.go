// Package netns is a test helper of the interop module: it starts a command
// in a network namespace of its own, where the interop tests put TUNs,
// veth pairs and listeners that must not meet the host's (or another
// test's) addresses. Linux only: elsewhere the command fails to start with
// an error that says so.
package netns

import "os/exec"

// Command is exec.Command(name, args...) to run in a new network
// namespace (needs root, as CI runs).
func Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	Isolate(cmd)
	return cmd
}

// Isolate makes cmd, not yet started, run in a new network namespace.
func Isolate(cmd *exec.Cmd) { isolate(cmd) }
