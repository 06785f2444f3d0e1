package sim

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/internal/runfile"
)

// TestFleetStateLock: a second fleet on the same state folder (a second
// 'tunneld --simulate') is refused before it touches anything: the first
// fleet's usbmuxd socket stays and answers. Once the first is closed the
// state can be used again.
func TestFleetStateLock(t *testing.T) {
	state := t.TempDir()
	cfg := FleetConfig{Count: 1, StateDir: state, LockdownKey: testKey()}
	first, err := StartFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, err = StartFleet(cfg)
	if !errors.Is(err, runfile.ErrLocked) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), "another state folder") {
		t.Fatalf("second fleet on the same state: %v", err)
	}
	if _, err := os.Stat(first.UsbmuxSocket()); err != nil {
		t.Fatalf("the first fleet's socket is gone: %v", err)
	}
	devs, err := usbmuxClient(first.UsbmuxSocket()).ListDevices(testCtx(t))
	if err != nil || len(devs) != 1 {
		t.Fatalf("the first fleet's usbmuxd after the refused second: %v, %v", devs, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := StartFleet(cfg)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}
