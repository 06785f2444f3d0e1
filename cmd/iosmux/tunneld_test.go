package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/sim"
	"howett.net/plist"
)

// TestTunneldCommand runs `iosmux tunneld --simulate 2` in userspace mode on
// an ephemeral port: it prints where the API is and each tunnel coming up,
// lists both devices, and stops cleanly on cancellation; on both device
// ends of the simulator (tunneld lists a tunnel once its RSD answered).
func TestTunneldCommand(t *testing.T) {
	for _, end := range sim.DeviceEnds {
		t.Run(end, func(t *testing.T) { testTunneldCommand(t, end) })
	}
}

func testTunneldCommand(t *testing.T, end string) {
	out := &lockedBuffer{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := t.TempDir()
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, out, io.Discard, nil, "tunneld", "--simulate", "2", "--userspace", "--port", "0", "--api", "pmd3,goios",
			"--go-ios-port", "0", "--simulate-state", state+"/sim", "--state-dir", state, "--simulate-device-end", end)
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
	// One command to paste, naming a listed device and this API.
	api := strings.TrimSuffix(strings.TrimPrefix(m[1], "http://"), "/")
	try := regexp.MustCompile(`try it: +iosmux rsd-info --tunnel (\S+) --tunneld (\S+)\n`).FindStringSubmatch(text())
	if try == nil || listing[try[1]] == nil || try[2] != api || strings.Count(text(), "try it:") != 1 {
		t.Errorf("no single 'try it: iosmux rsd-info --tunnel UDID --tunneld %s' line for a listed device in:\n%s", api, text())
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
		{"--advertise", "both"},
		{"--simulate-device-end", "vm"},
		{"extra"},
	} {
		if err := execIn(context.Background(), io.Discard, io.Discard, nil, append([]string{"tunneld"}, args...)...); !isUsage(err) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestDistArgs: the command lines of dist/'s systemd unit and launchd plist
// name only global flags that exist and tunneld flags that parse (a renamed
// flag fails here, not on a user's machine).
func TestDistArgs(t *testing.T) {
	unit, err := os.ReadFile("../../dist/iosmux-tunneld.service")
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]string
	for _, l := range strings.Split(string(unit), "\n") {
		if rest, ok := strings.CutPrefix(l, "ExecStart="); ok {
			lines = append(lines, strings.Fields(rest))
		}
	}
	pl, err := os.ReadFile("../../dist/com.iosmux.tunneld.plist")
	if err != nil {
		t.Fatal(err)
	}
	var job struct {
		Label            string            `plist:"Label"`
		ProgramArguments []string          `plist:"ProgramArguments"`
		Env              map[string]string `plist:"EnvironmentVariables"`
	}
	if _, err := plist.Unmarshal(pl, &job); err != nil {
		t.Fatalf("launchd plist: %v", err)
	}
	if job.Label != "com.iosmux.tunneld" || job.Env["IOSMUX_PAIR_RECORDS"] == "" {
		t.Errorf("launchd job = %+v", job)
	}
	lines = append(lines, job.ProgramArguments)
	if len(lines) != 2 {
		t.Fatalf("found %d command lines, want 2", len(lines))
	}
	for _, args := range lines {
		if filepath.Base(args[0]) != "iosmux" || !slices.Contains(args, "tunneld") {
			t.Errorf("%v does not run iosmux tunneld", args)
			continue
		}
		// Parse for real, on ephemeral ports, with nothing to watch; the
		// cancelled context stops the daemon at once.
		dir := t.TempDir()
		env := map[string]string{"IOSMUX_STATE_DIR": dir, "IOSMUX_PAIR_RECORDS": dir + "/records"}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		run := append(slices.Clone(args[1:]), "--port", "0", "--go-ios-port", "0", "--appium-port", "0",
			"--no-usbmux", "--no-usb", "--no-wifi", "--no-mobdev2", "--userspace")
		if err := execIn(ctx, io.Discard, io.Discard, env, run...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}
