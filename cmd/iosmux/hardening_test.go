package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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

	"github.com/iosmux/iosmux/internal/testkit"
)

// bareTunneld runs tunneld in-process watching nothing (no devices, no
// root needed) with extra arguments, until the test ends; it returns its
// stdout, stderr and pymobiledevice3 API address.
func bareTunneld(t *testing.T, env map[string]string, args ...string) (out, errw *testkit.Buffer, api string, done <-chan error) {
	t.Helper()
	out, errw = &testkit.Buffer{}, &testkit.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	if env == nil {
		env = map[string]string{}
	}
	if env["IOSMUX_STATE_DIR"] == "" {
		env["IOSMUX_STATE_DIR"] = t.TempDir()
	}
	go func() {
		ch <- execIn(ctx, out, errw, env, append([]string{"tunneld", "--userspace", "--port", "0",
			"--no-usbmux", "--no-usb", "--no-wifi", "--no-mobdev2"}, args...)...)
	}()
	t.Cleanup(func() { cancel(); <-ch })
	re := regexp.MustCompile(`pymobiledevice3 tunneld API: +http://(\S+)/`)
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return out, errw, m[1], ch
		}
		select {
		case err := <-ch:
			t.Fatalf("tunneld exited: %v\n%s%s", err, out, errw)
		default:
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no API address in %q", out.String())
		}
	}
}

func getHost(t *testing.T, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTunneldAllowHost: a Host header that is a name is refused (403
// naming --allow-host) unless allowed; --host localhost is loopback, no
// warning.
func TestTunneldAllowHost(t *testing.T) {
	_, errw, api, _ := bareTunneld(t, nil, "--host", "localhost", "--allow-host", "mymac.local", "--allow-host", "host.docker.internal")
	if !strings.HasPrefix(api, "127.0.0.1:") {
		t.Errorf("--host localhost bound %s", api)
	}
	for _, host := range []string{"mymac.local", "HOST.DOCKER.INTERNAL:49151", "localhost", "127.0.0.1"} {
		if code, body := getHost(t, "http://"+api+"/hello", host); code != 200 {
			t.Errorf("Host %s: %d %s", host, code, body)
		}
	}
	code, body := getHost(t, "http://"+api+"/hello", "other.lan:49151")
	if code != 403 || !strings.Contains(body, "--allow-host other.lan") {
		t.Errorf("Host other.lan: %d %s; want 403 naming --allow-host other.lan", code, body)
	}
	if strings.Contains(errw.String(), "WARNING") {
		t.Errorf("--host localhost warned:\n%s", errw)
	}
}

// TestExposureWarnings: every server bound beyond loopback warns, on
// stderr and in the log; loopback ones and "localhost" do not. tunneld
// --advertise backend with a wildcard --backend-host warns before any
// backend exists (they are made per device).
func TestExposureWarnings(t *testing.T) {
	for _, tt := range []struct {
		addr string
		warn bool
	}{
		{"0.0.0.0:49151", true}, {"[::]:0", true}, {"192.168.1.7:1", true}, {"myhost:1", true},
		{"127.0.0.1:49151", false}, {"[::1]:0", false}, {"localhost:0", false}, {"[::ffff:127.0.0.1]:1", false},
	} {
		var errb, logb bytes.Buffer
		a := testApp(io.Discard, nil)
		a.stderr = &errb
		a.log, _ = newLogger(&logb, "info", "text")
		warnExposed(a, "the tunnel APIs", tt.addr, "can stop tunnels", "Use loopback.")
		got := strings.Contains(errb.String(), "WARNING") && strings.Contains(logb.String(), "REACHABLE FROM THE NETWORK")
		if got != tt.warn {
			t.Errorf("%s: warned %v, want %v (%q %q)", tt.addr, got, tt.warn, errb.String(), logb.String())
		}
	}
	_, errw, _, _ := bareTunneld(t, nil, "--advertise", "backend", "--backend-host", "0.0.0.0", "--backend-allow-client", "192.168.1.0/24")
	if s := errw.String(); !strings.Contains(s, "WARNING: the backends") || !strings.Contains(s, "0.0.0.0:0") {
		t.Errorf("tunneld --backend-host 0.0.0.0 did not warn:\n%s", s)
	}
	if code, _, errs := runCLI(t, nil, "tunneld", "--backend-allow-client", "not-an-address", "--userspace"); code != 2 || !strings.Contains(errs, "--backend-allow-client") {
		t.Errorf("bad allow-list entry: exit %d, %q", code, errs)
	}
}

// TestSystemdReady: with NOTIFY_SOCKET set (systemd's Type=notify),
// tunneld sends READY=1 once its API serves.
func TestSystemdReady(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, _, api, _ := bareTunneld(t, map[string]string{"NOTIFY_SOCKET": sock})
	pc.SetReadDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, 64)
	n, err := pc.Read(b)
	if err != nil || string(b[:n]) != "READY=1" {
		t.Fatalf("systemd got %q, %v", b[:n], err)
	}
	if code, _ := getHost(t, "http://"+api+"/hello", api); code != 200 {
		t.Errorf("API not answering after READY=1: %d", code)
	}
}

// TestSimulateStateLock: a second 'tunneld --simulate' on the same state
// binds its API first, then is refused by the state folder's lock, and
// the first one's usbmuxd socket is still there.
func TestSimulateStateLock(t *testing.T) {
	state := t.TempDir()
	env := map[string]string{"IOSMUX_STATE_DIR": state}
	_, _, _, _ = bareTunneld(t, env, "--simulate", "1")
	sock := filepath.Join(state, "sim", "usbmuxd")
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatal("the first tunneld's simulated usbmuxd never appeared")
		}
	}
	code, _, errs := runCLI(t, env, "tunneld", "--simulate", "1", "--userspace", "--port", "0")
	if code != 1 || !strings.Contains(errs, "already run on this state") || !strings.Contains(errs, strconv.Itoa(os.Getpid())) {
		t.Errorf("second tunneld --simulate: exit %d, %q", code, errs)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the first tunneld's socket is gone: %v", err)
	}
}

// TestAddressInUseMessage: a busy --port fails before anything starts and
// says what is probably there.
func TestAddressInUseMessage(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	state := t.TempDir()
	code, _, errs := runCLI(t, map[string]string{"IOSMUX_STATE_DIR": state}, "tunneld", "--simulate", "1", "--userspace", "--port", port)
	want := "another tunneld is probably running on " + port + " (curl http://127.0.0.1:" + port + "/hello)"
	if code != 1 || !strings.Contains(errs, want) {
		t.Errorf("busy port: exit %d, %q; want %q", code, errs, want)
	}
	if _, err := os.Stat(filepath.Join(state, "sim")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the simulated iPhones were started before the API was bound (%v)", err)
	}
}

// TestSudoStateFolder: under sudo the state folder is the invoking
// user's and what root creates there (and the parents it makes) is given
// back to them; a folder the user may not write says what to do.
func TestSudoStateFolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CI runs as root) to act as sudo")
	}
	home := t.TempDir()
	os.Chown(home, 4242, 4242)
	defer func(f func(string) (string, error)) { lookupHome = f }(lookupHome)
	lookupHome = func(name string) (string, error) {
		if name != "alice" {
			return "", fmt.Errorf("no user %s", name)
		}
		return home, nil
	}
	a := testApp(io.Discard, map[string]string{"SUDO_USER": "alice", "SUDO_UID": "4242", "SUDO_GID": "4243", "HOME": "/root"})
	dir, err := rsdStateDir(a, "")
	if err != nil || dir != filepath.Join(home, ".local", "state", "iosmux") {
		t.Fatalf("state folder under sudo = %s, %v", dir, err)
	}
	if _, err := loadHostUUID(a, dir); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "sim", "device-00"), 0o700) // what a daemon writes later
	os.WriteFile(filepath.Join(dir, "sim", "device-00", "identity.json"), []byte("{}"), 0o600)
	chownBack(a, dir)
	for _, p := range []string{filepath.Join(home, ".local"), filepath.Join(home, ".local", "state"), dir,
		filepath.Join(dir, "host-uuid"), filepath.Join(dir, "sim"), filepath.Join(dir, "sim", "device-00", "identity.json")} {
		st, err := os.Lstat(p)
		if err != nil {
			if strings.HasSuffix(p, "host-uuid") {
				continue // named differently: checked by the walk below
			}
			t.Fatal(err)
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 4242 || sys.Gid != 4243 {
			t.Errorf("%s owned by %d:%d, want 4242:4243", p, sys.Uid, sys.Gid)
		}
	}
	filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if st, err := os.Lstat(p); err == nil && st.Sys().(*syscall.Stat_t).Uid != 4242 {
			t.Errorf("%s still root's", p)
		}
		return nil
	})
	if st, _ := os.Stat(home); st.Sys().(*syscall.Stat_t).Gid != 4242 {
		t.Error("the home folder itself was changed")
	}

	err = stateDirError(dir, &fs.PathError{Op: "open", Path: dir, Err: syscall.EACCES})
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "sudo chown -R") || !strings.Contains(err.Error(), "--state-dir") {
		t.Errorf("EACCES: %v", err)
	}
}
