// Package testkit holds generic helpers for tests across iosmux: an
// in-memory buffered conn pair, a conn that keeps write boundaries across a
// real socket, a goroutine and file-descriptor leak check, deterministic
// randomness and (on Linux) throwaway network namespaces.
//
// Only _test.go files import it (internal/deptest enforces that).
package testkit
