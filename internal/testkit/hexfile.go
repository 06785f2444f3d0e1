package testkit

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ReadHex reads testdata/name, a known-answer vector written as hex
// (whitespace around it ignored), and returns its bytes; it fails t when
// the file is missing or not hex.
func ReadHex(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	out, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("testdata/%s: %v", name, err)
	}
	return out
}
