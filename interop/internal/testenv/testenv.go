// Package testenv holds what every interop test package needs from its
// surroundings: where the interop module lies (its node_modules and the
// nested Go modules of go-ios's helpers) and the repository around it and one RSA key for simulated
// devices and hosts, made once per test binary because 2048-bit keys take
// a while.
package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"path/filepath"
	"runtime"
	"sync"
)

// ModuleDir is the interop module's root directory.
func ModuleDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// RepoDir is the repository's root, the main module's directory (one up
// from ModuleDir): where iosmux itself is built and its testdata lie.
func RepoDir() string { return filepath.Dir(ModuleDir()) }

// RSAKey is a 2048-bit RSA key, the same for every caller in a process.
var RSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})
