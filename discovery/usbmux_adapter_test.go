package discovery

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/usbmux"
)

// TestUsbmuxMonitorAgainstServer runs the monitor against usbmux's own
// server role on a UNIX socket: attach, detach, a dropped Listen stream
// (the Linux usbmuxd quirk of pmd3 issue #1742) and the undashed serial.
func TestUsbmuxMonitorAgainstServer(t *testing.T) {
	testkit.CheckLeaks(t)
	path := filepath.Join(t.TempDir(), "usbmuxd")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := usbmux.NewServer(usbmux.ServerConfig{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() { srv.Close(); <-served }()

	client := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: path}})
	m := &UsbmuxMonitor{Events: UsbmuxEvents(client, usbmux.WatchConfig{MinBackoff: 10 * time.Millisecond})}
	events := make(chan Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx, func(e Event) { events <- e }) }()
	next := func() Event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(20 * time.Second):
			t.Fatal("no event")
		}
		return Event{}
	}

	tr := NewTracker()
	id := srv.AddDevice(usbmux.DeviceEntry{SerialNumber: "00008030001A2B3C3C02802E", ConnectionType: "USB", ProductID: 0x12a8}, nil)
	e := next()
	if e.Kind != Attached || e.DeviceID != id || e.UDID != "00008030001A2B3C3C02802E" || e.ProductID != 0x12a8 || e.ConnectionType != "USB" {
		t.Fatalf("event = %+v", e)
	}
	tr.Apply(e)
	if _, ok := tr.Best("00008030-001A2B3C3C02802E"); !ok {
		t.Error("undashed serial not found under the dashed UDID")
	}
	// The stream drops: the device is reported gone, then back.
	srv.DropListeners()
	if e := next(); e.Kind != Detached || e.DeviceID != id {
		t.Fatalf("after drop: %+v", e)
	}
	if e := next(); e.Kind != Attached || e.DeviceID != id {
		t.Fatalf("after reconnect: %+v", e)
	}
	srv.RemoveDevice(id)
	if e := next(); e.Kind != Detached || e.DeviceID != id || e.UDID != "00008030001A2B3C3C02802E" {
		t.Fatalf("detach: %+v", e)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
}
