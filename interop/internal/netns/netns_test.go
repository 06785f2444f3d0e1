package netns

import (
	"os"
	"runtime"
	"strings"
	"testing"
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
