package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModuleDir(t *testing.T) {
	checkModule(t, ModuleDir(), "github.com/iosmux/iosmux/interop")
}

func TestRepoDir(t *testing.T) {
	checkModule(t, RepoDir(), "github.com/iosmux/iosmux")
}

// checkModule fails t unless dir/go.mod declares module path.
func checkModule(t *testing.T, dir, path string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "module " + path + "\n"; len(b) < len(want) || string(b[:len(want)]) != want {
		t.Fatalf("%s/go.mod starts %q, want %q", dir, b[:min(len(b), 60)], want)
	}
}

func TestRSAKeyIsOne(t *testing.T) {
	a, b := RSAKey(), RSAKey()
	if a != b || a.N.BitLen() != 2048 {
		t.Fatal("want one 2048-bit key per process")
	}
}
