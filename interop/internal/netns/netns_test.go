package netns

import (
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestCommandHasItsOwnNamespace: the child's network namespace differs
// from this process's.
func TestCommandHasItsOwnNamespace(t *testing.T) {
	if runtime.GOOS != "linux" {
		if err := Command("true").Run(); err == nil {
			t.Fatal("Command ran outside Linux; want an error")
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root for a network namespace (CI runs as root)")
	}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Command("readlink", "/proc/self/ns/net").Output()
	if err != nil {
		t.Fatal(err)
	}
	child := strings.TrimSpace(string(out))
	if child == "" || child == self {
		t.Fatalf("child's namespace %q, this process's %q: want a different one", child, self)
	}
}

// TestRunTestNeedsAPass: a test that passes in the namespace is a pass; a
// name that matches no test, or a test that fails there, is not.
func TestRunTestNeedsAPass(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		return // the re-executed copy of this test has nothing to check
	}
	if runtime.GOOS != "linux" {
		if _, err := runTest("TestHelperInNamespace", time.Minute, []string{helperEnv + "=pass"}); err == nil {
			t.Fatal("ran outside Linux; want an error")
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root for a network namespace (CI runs as root)")
	}
	if _, err := runTest("TestHelperInNamespace", time.Minute, []string{helperEnv + "=pass"}); err != nil {
		t.Errorf("a passing test: %v", err)
	}
	if _, err := runTest("TestHelperInNamespace", time.Minute, []string{helperEnv + "=fail"}); err == nil {
		t.Error("a failing test counted as a pass")
	}
	if _, err := runTest("TestNoSuchTest", time.Minute, nil); err == nil || !strings.Contains(err.Error(), "did not report a pass") {
		t.Errorf("a name matching no test: %v, want \"did not report a pass\"", err)
	}
}

const helperEnv = "IOSMUX_NETNS_HELPER"

// TestHelperInNamespace is what TestRunTestNeedsAPass runs: it passes or
// fails as told, and checks it is in a namespace of its own (no veth, only
// lo). Without the variable it does nothing.
func TestHelperInNamespace(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
	case "pass":
		ifs, err := net.Interfaces()
		if err != nil || len(ifs) != 1 || ifs[0].Name != "lo" {
			t.Fatalf("interfaces %v, %v: want lo alone", ifs, err)
		}
	default:
		t.Fatal("told to fail")
	}
}
