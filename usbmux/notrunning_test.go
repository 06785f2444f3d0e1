package usbmux

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestNotRunning: no socket, or a socket nobody serves, says how to get a
// usbmuxd (or a simulated iPhone).
func TestNotRunning(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	for _, path := range []string{filepath.Join(dir, "missing"), stale} {
		c := NewClient(ClientConfig{Addr: Addr{Net: "unix", Path: path}})
		_, err := c.ListDevices(testCtx(t))
		if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "apt install usbmuxd") || !strings.Contains(err.Error(), "iosmux sim") {
			t.Errorf("%s: %v; want ErrNotRunning with the fix", path, err)
		}
	}
}
