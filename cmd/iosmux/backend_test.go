package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
)

// TestBackendCommand: `iosmux backend --simulate --json` serves the
// simulated iPhone's Handshake on --listen, keeps the host UUID and the
// wire log where asked, and stops on cancel.
func TestBackendCommand(t *testing.T) {
	state := t.TempDir()
	wire := filepath.Join(state, "wire.jsonl")
	out := &lockedBuffer{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, out, io.Discard, nil, "backend", "--simulate", "--listen", "127.0.0.1:0", "--untrusted", "127.0.0.1:0",
			"--state-dir", state, "--wire-log", wire, "--json")
	}()
	select {
	case <-out.ready:
	case err := <-done:
		t.Fatalf("backend exited early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no endpoints printed")
	}
	var e backendOut
	out.mu.Lock()
	err := json.Unmarshal(out.buf.Bytes(), &e)
	out.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if e.RSD == "" || e.Untrusted == "" || e.UDID == "" || e.UUID == "" || e.WireLog != wire {
		t.Errorf("endpoints %+v", e)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	nc, err := net.Dial("tcp", e.RSD)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rsd.NewClient(rctx, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Handshake.Device().UDID != e.UDID || c.Handshake.UUID.String() != e.UUID {
		t.Errorf("Handshake UDID %s UUID %v, printed %s %s", c.Handshake.Device().UDID, c.Handshake.UUID, e.UDID, e.UUID)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("backend: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, rsd.HostUUIDFile)); err != nil {
		t.Errorf("host UUID not kept: %v", err)
	}
	raw, err := os.ReadFile(wire)
	if err != nil || !json.Valid([]byte(firstLine(raw))) {
		t.Errorf("wire log: %v %q", err, firstLine(raw))
	}
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}

func TestBackendCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--simulate", "--rsd", "[fd00::1]:1234"},
		{"--udid", "x", "extra"},
	} {
		if err := execIn(context.Background(), io.Discard, io.Discard, nil, append([]string{"backend"}, args...)...); !isUsage(err) {
			t.Errorf("backend %q: %v, want a usage error", args, err)
		}
	}
}

// TestBackendWaitsForTunnel: backend --tunnel says what it waits for while
// tunneld does not list the device yet (and keeps waiting).
func TestBackendWaitsForTunnel(t *testing.T) {
	api := httptest.NewServer(rsdapi.New(rsdapi.Config{Registry: rsdapitest.New()}).PMD3Handler())
	defer api.Close()
	addr := strings.TrimPrefix(api.URL, "http://")
	var errb lineBuffer
	errb.line = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, io.Discard, &errb, nil, "backend", "--tunnel", "00008110-000000000000000A", "--tunneld", addr,
			"--listen", "127.0.0.1:0", "--state-dir", t.TempDir())
	}()
	want := "waiting for device 00008110-000000000000000A's tunnel in tunneld at " + addr
	for start := time.Now(); !strings.Contains(errb.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("stderr %q lacks %q", errb.String(), want)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("backend gave up: %v", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
