package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/usbmux"
)

// lockedBuffer is stdout shared with the command's goroutine; ready closes
// once a complete JSON value has been written.
type lockedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if json.Valid(bytes.TrimSpace(b.buf.Bytes())) {
		b.once.Do(func() { close(b.ready) })
	}
	return n, err
}

func TestSimCommand(t *testing.T) {
	for _, end := range sim.DeviceEnds {
		t.Run(end, func(t *testing.T) { testSimCommand(t, end) })
	}
}

func testSimCommand(t *testing.T, end string) {
	state := t.TempDir()
	out := &lockedBuffer{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, out, io.Discard, nil, "sim", "--count", "3", "--profile", "17.4", "--simulate-state", state, "--device-end", end, "--json")
	}()
	select {
	case <-out.ready:
	case err := <-done:
		t.Fatalf("sim exited early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no endpoints printed")
	}
	var e sim.FleetEndpoints
	out.mu.Lock()
	err := json.Unmarshal(out.buf.Bytes(), &e)
	out.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Devices) != 3 || e.Control == "" || e.UsbmuxSocket == "" {
		t.Fatalf("endpoints %+v", e)
	}
	for _, d := range e.Devices {
		if d.OSVersion != "17.4" || d.UntrustedRSD == "" || d.NetworkPairing == "" || d.State != "plugged" || d.DeviceEnd != end {
			t.Errorf("device %+v", d)
		}
	}
	c := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: e.UsbmuxSocket}})
	list, err := c.ListDevices(context.Background())
	if err != nil || len(list) != 3 {
		t.Errorf("usbmuxd lists %d devices, %v", len(list), err)
	}
	resp, err := http.Post(e.Control+"/devices/"+e.Devices[0].UDID+"/unplug", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("control unplug: %v %v", resp, err)
	}
	resp.Body.Close()
	if list, _ := c.ListDevices(context.Background()); len(list) != 2 {
		t.Errorf("after unplug usbmuxd lists %d", len(list))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListDevices(context.Background()); err == nil {
		t.Error("usbmuxd socket still answers after shutdown")
	}
}

func TestSimBadFlags(t *testing.T) {
	for _, args := range [][]string{{"sim", "--profile", "16.0"}, {"sim", "--count", "0"}, {"sim", "--realism", "usb9"}, {"sim", "--wifi"}, {"sim", "--device-end", "vm"}, {"sim", "--tls-suites", "gcm"}} {
		var errb bytes.Buffer
		if code := run(args, io.Discard, &errb, func(string) string { return "" }); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}
