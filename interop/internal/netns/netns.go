// Package netns is a test helper of the interop module: it starts a command
// in a network namespace of its own, where the interop tests put TUNs,
// veth pairs and listeners that must not meet the host's (or another
// test's) addresses. Linux only: elsewhere the command fails to start with
// an error that says so.
package netns

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Command is exec.Command(name, args...) to run in a new network
// namespace (needs root, as CI runs).
func Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	Isolate(cmd)
	return cmd
}

// Isolate makes cmd, not yet started, run in a new network namespace.
func Isolate(cmd *exec.Cmd) { isolate(cmd) }

// RunTest runs this test binary's test name again in a new network
// namespace, with env added to the environment, logs what it printed, and
// fails t unless it ran and passed.
func RunTest(t testing.TB, name string, timeout time.Duration, env ...string) {
	t.Helper()
	out, err := runTest(name, timeout, env)
	t.Logf("in the namespace:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
}

func runTest(name string, timeout time.Duration, env []string) ([]byte, error) {
	cmd := Command(os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1", "-test.timeout="+timeout.String())
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s in a network namespace: %w", name, err)
	}
	// A name that matches no test runs nothing and still exits 0.
	if !bytes.Contains(out, []byte("--- PASS: "+name)) {
		return out, fmt.Errorf("%s in a network namespace did not report a pass", name)
	}
	return out, nil
}
