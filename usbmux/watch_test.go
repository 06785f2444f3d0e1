package usbmux

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

func nextEvent(t *testing.T, w *Watcher) Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("event stream closed")
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20 s")
	}
	return Event{}
}

// TestWatchReconnects: usbmuxd vanishes and a new one comes up on the same
// socket; the stream says so and carries the new daemon's devices.
func TestWatchReconnects(t *testing.T) {
	testkit.CheckLeaks(t)
	srv := NewServer(ServerConfig{})
	srv.AddDevice(usbDev, NewPortMux(0))
	c, path := startServer(t, srv)
	w := c.Watch(context.Background(), WatchConfig{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	defer w.Close()

	if ev := nextEvent(t, w); ev.Kind != Connected {
		t.Fatalf("first event %v; want Connected", ev.Kind)
	}
	if ev := nextEvent(t, w); ev.Kind != Attached || ev.Device.SerialNumber != usbDev.SerialNumber {
		t.Fatalf("second event %+v; want Attached %s", ev, usbDev.SerialNumber)
	}
	srv.Close()
	ev := nextEvent(t, w)
	if ev.Kind != Disconnected || ev.Err == nil {
		t.Fatalf("after usbmuxd went away: %+v; want Disconnected with an error", ev)
	}

	srv2 := NewServer(ServerConfig{})
	srv2.AddDevice(netDev, NewPortMux(0))
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv2.Serve(l) }()
	defer func() { srv2.Close(); <-done }()

	if ev := nextEvent(t, w); ev.Kind != Connected {
		t.Fatalf("after restart: %v; want Connected", ev.Kind)
	}
	if ev := nextEvent(t, w); ev.Kind != Attached || ev.Device.SerialNumber != netDev.SerialNumber {
		t.Fatalf("after restart: %+v; want Attached %s", ev, netDev.SerialNumber)
	}
	w.Close()
	w.Close() // idempotent
	if _, ok := <-w.Events(); ok {
		t.Error("events still open after Close")
	}
}

// TestWatchBackoff checks the retry schedule against a usbmuxd that never
// comes up, on synctest's fake clock.
func TestWatchBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var attempts []time.Time
		dialErr := errors.New("connection refused")
		c := NewClient(ClientConfig{Dial: func(context.Context, string, string) (net.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Now())
			return nil, dialErr
		}})
		w := c.Watch(context.Background(), WatchConfig{MinBackoff: 500 * time.Millisecond, MaxBackoff: 4 * time.Second})
		ev := <-w.Events()
		if ev.Kind != Disconnected || !errors.Is(ev.Err, dialErr) {
			t.Fatalf("first event %+v; want Disconnected wrapping the dial error", ev)
		}
		time.Sleep(20 * time.Second)
		synctest.Wait()
		select {
		case ev := <-w.Events():
			t.Errorf("extra event %+v during one outage; want Disconnected reported once", ev)
		default:
		}
		w.Close()

		want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
		mu.Lock()
		defer mu.Unlock()
		if len(attempts) < len(want)+1 {
			t.Fatalf("%d attempts in 20 s; want at least %d", len(attempts), len(want)+1)
		}
		for i, d := range want {
			if got := attempts[i+1].Sub(attempts[i]); got != d {
				t.Errorf("wait before attempt %d = %v, want %v", i+2, got, d)
			}
		}
	})
}
