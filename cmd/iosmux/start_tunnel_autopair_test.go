package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/sim"
)

// promptWatcher is stderr that plays the user: when the Trust prompt shows,
// it taps Trust on the simulated device.
type promptWatcher struct {
	mu  sync.Mutex
	buf bytes.Buffer
	dev *sim.Device
}

func (w *promptWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), trustPrompt) {
		w.dev.SetTrust(sim.TrustAccept)
	}
	return len(p), nil
}

func (w *promptWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestStartTunnelAutopair: start-tunnel over usbmux against never-paired
// devices pairs first (the prompt on stderr, the user taps Trust) and
// brings the tunnel up; Don't Trust fails with the denial; --no-autopair
// says what to run.
func TestStartTunnelAutopair(t *testing.T) {
	f, err := sim.StartFleet(sim.FleetConfig{Count: 2, Profile: sim.MustProfile("18.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	accept, deny := f.Devices()[0], f.Devices()[1]
	accept.SetTrust(sim.TrustPending)
	deny.SetTrust(sim.TrustDeny)
	mux := "UNIX:" + f.UsbmuxSocket()

	errw := &promptWatcher{dev: accept}
	out := &lockedBuffer{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, out, errw, nil, "start-tunnel", "--udid", accept.UDID(), "--usbmux-address", mux, "--userspace", "--json")
	}()
	select {
	case <-out.ready:
	case err := <-done:
		t.Fatalf("start-tunnel exited: %v (stderr %q)", err, errw.String())
	case <-time.After(time.Minute):
		t.Fatal("no tunnel")
	}
	var shown tunnelOutput
	out.mu.Lock()
	err = json.Unmarshal(out.buf.Bytes(), &shown)
	out.mu.Unlock()
	if err != nil || shown.Identifier != accept.UDID() {
		t.Fatalf("tunnel %+v, %v", shown, err)
	}
	if !strings.Contains(errw.String(), trustPrompt) || accept.Stats().TrustPrompts != 1 {
		t.Errorf("stderr %q, %d Trust dialogs; want the prompt and one dialog", errw.String(), accept.Stats().TrustPrompts)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("start-tunnel after interrupt: %v", err)
	}

	err = execIn(context.Background(), io.Discard, io.Discard, nil, "start-tunnel", "--udid", deny.UDID(), "--usbmux-address", mux, "--userspace")
	if err == nil || !strings.Contains(err.Error(), "Don't Trust") || !strings.Contains(err.Error(), deny.UDID()) {
		t.Errorf("start-tunnel with Trust denied: %v", err)
	}
	err = execIn(context.Background(), io.Discard, io.Discard, nil, "start-tunnel", "--udid", deny.UDID(), "--usbmux-address", mux, "--userspace", "--no-autopair")
	if err == nil || !strings.Contains(err.Error(), "iosmux lockdown pair --udid "+deny.UDID()) || deny.Stats().TrustPrompts != 1 {
		t.Errorf("start-tunnel --no-autopair: %v (%d dialogs)", err, deny.Stats().TrustPrompts)
	}
}
