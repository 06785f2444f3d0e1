package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTunneldCommand runs `iosmux tunneld --simulate 2` in userspace mode on
// an ephemeral port: it prints where the API is and each tunnel coming up,
// lists both devices, and stops cleanly on cancellation.
func TestTunneldCommand(t *testing.T) {
	out := &lockedBuffer{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &app{stdout: out, stderr: io.Discard, log: slog.New(slog.DiscardHandler), getenv: func(string) string { return "" }}
	state := t.TempDir()
	done := make(chan error, 1)
	go func() {
		done <- runTunneld(ctx, a, []string{"--simulate", "2", "--userspace", "--port", "0", "--api", "pmd3,goios",
			"--go-ios-port", "0", "--simulate-state", state + "/sim", "--state-dir", state})
	}()
	text := func() string {
		out.mu.Lock()
		defer out.mu.Unlock()
		return out.buf.String()
	}
	wait := func(what string, cond func(string) bool) {
		t.Helper()
		for start := time.Now(); !cond(text()); time.Sleep(10 * time.Millisecond) {
			select {
			case err := <-done:
				t.Fatalf("tunneld exited early: %v\n%s", err, text())
			default:
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("no %s in:\n%s", what, text())
			}
		}
	}
	wait("two tunnels", func(s string) bool { return strings.Count(s, "tunnel up") == 2 })
	m := regexp.MustCompile(`pymobiledevice3 tunneld API: (http://127\.0\.0\.1:\d+/)`).FindStringSubmatch(text())
	if m == nil {
		t.Fatalf("no API address in:\n%s", text())
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	var listing map[string][]map[string]any
	err = json.NewDecoder(resp.Body).Decode(&listing)
	resp.Body.Close()
	if err != nil || len(listing) != 2 {
		t.Fatalf("GET / = %v, %v", listing, err)
	}
	if !strings.Contains(text(), "go-ios proxy 127.0.0.1:") {
		t.Errorf("userspace tunnels without their proxy port:\n%s", text())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tunneld: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("tunneld did not stop")
	}
	if strings.Count(text(), "tunnel down") != 2 {
		t.Errorf("teardown not reported:\n%s", text())
	}
}

func TestTunneldBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--protocol", "udp"},
		{"--api", "pmd3,grpc"},
		{"--simulate", "-1"},
		{"extra"},
	} {
		a := &app{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler), getenv: func(string) string { return "" }}
		if err := runTunneld(context.Background(), a, args); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
