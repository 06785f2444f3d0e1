// Package rsd_test runs third-party RSD clients against iosmux's RSD server
// and third-party XPC codecs against iosmux's, over loopback only.
package rsd_test

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// startServer serves the published example device (rsd.md §5) on a
// loopback port.
func startServer(t *testing.T) (*rsd.Server, int) {
	t.Helper()
	srv, err := rsd.NewServer(rsd.ServerConfig{Properties: rsd.ExampleProperties(), Services: rsd.ExampleServices()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return srv, ln.Addr().(*net.TCPAddr).Port
}

func wantServices(t *testing.T, got map[string]int) {
	t.Helper()
	want := rsd.ExampleServices()
	if len(got) != len(want) {
		t.Errorf("got %d services, want %d: %v", len(got), len(want), got)
	}
	for _, s := range want {
		if got[s.Name] != int(s.Port) {
			t.Errorf("service %s: got port %d, want %d", s.Name, got[s.Name], s.Port)
		}
	}
}

// TestAppiumDiscoverServices: appium-ios-remotexpc's RSD client completes the
// handshake against our server and reads the services we serve.
func TestAppiumDiscoverServices(t *testing.T) {
	_, port := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "rsd/appium_rsd.mjs", "127.0.0.1", strconv.Itoa(port))
	cmd.Dir = testenv.ModuleDir()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node appium_rsd.mjs: %v\n%s", err, stderr)
	}
	var services []struct {
		ServiceName string `json:"serviceName"`
		Port        string `json:"port"`
	}
	if err := json.Unmarshal(out, &services); err != nil {
		t.Fatalf("appium output %q: %v", out, err)
	}
	got := map[string]int{}
	for _, s := range services {
		got[s.ServiceName], _ = strconv.Atoi(s.Port)
	}
	wantServices(t, got)
}

func mustUUID(t *testing.T, s string) xpc.UUID {
	u, err := xpc.ParseUUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
