package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModuleDir(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(ModuleDir(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "module github.com/iosmux/iosmux/interop\n"; len(b) < len(want) || string(b[:len(want)]) != want {
		t.Fatalf("%s/go.mod starts %q, want %q", ModuleDir(), b[:min(len(b), 60)], want)
	}
}

func TestRSAKeyIsOne(t *testing.T) {
	a, b := RSAKey(), RSAKey()
	if a != b || a.N.BitLen() != 2048 {
		t.Fatal("want one 2048-bit key per process")
	}
}
