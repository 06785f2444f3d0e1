package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runReal runs a command line in-process with the real environment (what
// tunneld -d's background copy inherits).
func runReal(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, os.Getenv)
	return code, out.String(), errb.String()
}

// TestTunneldDaemon: tunneld -d returns once the background copy serves,
// with its pid and log files in a private runtime folder; a second one on
// the same pid file is refused; one that dies says why and exits 1; a
// symlink planted where the log goes is refused, its target untouched.
func TestTunneldDaemon(t *testing.T) {
	rt := t.TempDir()
	t.Setenv("IOSMUX_TEST_AS_MAIN", "1") // the background copy is this binary run as iosmux
	t.Setenv("XDG_RUNTIME_DIR", rt)
	t.Setenv("IOSMUX_STATE_DIR", t.TempDir())
	args := []string{"tunneld", "-d", "--userspace", "--port", "0", "--no-usbmux", "--no-usb", "--no-wifi", "--no-mobdev2"}

	code, out, errs := runReal(t, args...)
	if code != 0 {
		t.Fatalf("tunneld -d: exit %d\n%s%s", code, out, errs)
	}
	m := regexp.MustCompile(`pid (\d+), API http://(\S+)/`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("tunneld -d printed %q", out)
	}
	pid, _ := strconv.Atoi(m[1])
	defer syscall.Kill(pid, syscall.SIGKILL)
	api := m[2]
	resp, err := http.Get("http://" + api + "/hello")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the background tunneld does not answer right after -d returned: %v", err)
	}
	resp.Body.Close()
	dir := filepath.Join(rt, "iosmux")
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("runtime folder %s: %v %v", dir, st, err)
	}
	pidFile := filepath.Join(dir, "tunneld-0.pid")
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != m[1] {
		t.Errorf("pid file holds %q, %v; want %s", b, err, m[1])
	}
	if !strings.Contains(out, filepath.Join(dir, "tunneld-0.log")) {
		t.Errorf("the log's path is not printed: %q", out)
	}

	// A second daemon on the same pid file is refused, naming the first.
	code, _, errs = runReal(t, args...)
	if code != 1 || !strings.Contains(errs, "already running") || !strings.Contains(errs, "pid "+m[1]) {
		t.Errorf("second tunneld -d: exit %d, %q", code, errs)
	}

	// /shutdown stops it; its pid file goes with it.
	resp, err = http.Get("http://" + api + "/shutdown")
	if err == nil {
		resp.Body.Close()
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(pidFile); os.IsNotExist(err) && syscall.Kill(pid, 0) != nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("the background tunneld did not stop after /shutdown")
		}
	}

	// A child that dies before serving (its port is taken): its error,
	// exit 1.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	code, _, errs = runReal(t, "tunneld", "-d", "--port", port, "--userspace", "--no-usbmux", "--no-usb", "--no-wifi", "--no-mobdev2")
	if code != 1 || !strings.Contains(errs, "did not start") || !strings.Contains(errs, "another tunneld is probably running on "+port) {
		t.Errorf("a child that fails: exit %d, %q", code, errs)
	}

	// A symlink planted at the log's path (the old $TMPDIR attack) is
	// refused and its target untouched.
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	logPath := filepath.Join(dir, "tunneld-0.log")
	os.Remove(logPath)
	if err := os.Symlink(victim, logPath); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runReal(t, args...)
	if code != 1 {
		t.Errorf("tunneld -d with a symlinked log: exit %d, %q", code, errs)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the symlink's target was written: %q", b)
	}
}
