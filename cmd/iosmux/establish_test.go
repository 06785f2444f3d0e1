package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/sim/simtest"
)

// TestOneEstablishForTunneldAndStartTunnel: tunneld and start-tunnel bring
// their tunnels up through the same function (app.establish, which is
// establish.Establish), so a path added there is a path both have. The
// test adds one, a usbmux sighting carried over the device's untrusted RSD
// (P2, paired on the way) instead of CoreDeviceProxy, and refuses every
// other: start-tunnel --connection usbmux and tunneld watching usbmuxd each
// bring the device's tunnel up over it.
func TestOneEstablishForTunneldAndStartTunnel(t *testing.T) {
	f := simtest.StartFleet(t, sim.FleetConfig{Count: 1, Loopback: true, Profile: sim.MustProfile("18.2")})
	ep := f.Endpoints().Devices[0]
	mux := "UNIX:" + f.UsbmuxSocket()
	store := pairing.RecordStore{Dir: t.TempDir()}

	var mu sync.Mutex
	var added []establish.Method // the paths the added one brought up, per call
	withAddedPath := func(a *app) {
		a.establish = func(ctx context.Context, s discovery.Event, opt establish.Options) (*establish.Tunnel, error) {
			if s.Source != discovery.SourceUsbmux {
				return nil, establish.ErrUnsupportedPath
			}
			s = discovery.Event{Kind: discovery.Attached, Source: discovery.SourceNCM, UDID: s.UDID, Addr: netip.MustParseAddrPort(ep.UntrustedRSD)}
			opt.Records, opt.PairRSD, opt.HostName = store, true, "iosmux-test"
			tn, err := establish.Establish(ctx, s, opt)
			if err == nil {
				mu.Lock()
				added = append(added, tn.Method)
				mu.Unlock()
			}
			return tn, err
		}
	}
	run := func(ctx context.Context, stdout io.Writer, args ...string) error {
		a := newApp(stdout, io.Discard, func(string) string { return "" })
		withAddedPath(a)
		_, err := a.execute(ctx, args)
		return err
	}

	t.Run("start-tunnel", func(t *testing.T) {
		out := &lockedBuffer{ready: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, out, "start-tunnel", "--connection", "usbmux", "--usbmux-address", mux, "--udid", ep.UDID, "--userspace", "--json")
		}()
		select {
		case <-out.ready:
		case err := <-done:
			t.Fatalf("start-tunnel exited: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("no tunnel")
		}
		var shown tunnelOutput
		out.mu.Lock()
		err := json.Unmarshal(out.buf.Bytes(), &shown)
		out.mu.Unlock()
		if err != nil || shown.Identifier != ep.UDID || shown.Path != string(establish.MethodRSD) {
			t.Fatalf("start-tunnel --connection usbmux shows %+v, %v; want the added path (%s) to %s", shown, err, establish.MethodRSD, ep.UDID)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("start-tunnel: %v", err)
		}
	})

	t.Run("tunneld", func(t *testing.T) {
		out := &lockedBuffer{ready: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, out, "tunneld", "--usbmux-address", mux, "--no-usb", "--no-wifi", "--no-mobdev2", "--userspace",
				"--port", "0", "--pair-records", t.TempDir(), "--state-dir", t.TempDir())
		}()
		text := func() string {
			out.mu.Lock()
			defer out.mu.Unlock()
			return out.buf.String()
		}
		for start := time.Now(); !strings.Contains(text(), "tunnel up"); time.Sleep(10 * time.Millisecond) {
			select {
			case err := <-done:
				t.Fatalf("tunneld exited: %v\n%s", err, text())
			default:
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("no tunnel in:\n%s", text())
			}
		}
		api := strings.Fields(text()[strings.Index(text(), "http://"):])[0]
		resp, err := http.Get(api)
		if err != nil {
			t.Fatal(err)
		}
		var listing map[string][]map[string]any
		err = json.NewDecoder(resp.Body).Decode(&listing)
		resp.Body.Close()
		if err != nil || len(listing[ep.UDID]) != 1 {
			t.Fatalf("tunneld lists %v, %v; want %s's tunnel", listing, err, ep.UDID)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("tunneld: %v", err)
		}
	})

	mu.Lock()
	defer mu.Unlock()
	t.Logf("added path brought up: %v", added)
	if len(added) < 2 {
		t.Errorf("the added path brought up %d tunnels (%v); want one for start-tunnel and one for tunneld", len(added), added)
	}
}
