// Package launch_test is issue 17's acceptance against the simulated
// iPhone: appium-ios-remotexpc's AppService and CoreDeviceInfoService over
// RSD, Debian's lldb through `iosmux debugserver` (a kernel tunnel and a
// userspace one), and `iosmux apps launch --console`. Everything runs in a
// network namespace of its own (the kernel tunnel's interface and routes
// stay there), as root.
package launch_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/interop/internal/pmd3wait"

	"github.com/iosmux/iosmux/internal/ipa/ipatest"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunneld"
	"github.com/iosmux/iosmux/usbmux"
)

// testDDI is the synthetic developer disk image of the mounter's tests.
func testDDI() string {
	return filepath.Join(testenv.RepoDir(), "services", "mounter", "ddi", "testdata", "ddi_restore")
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// demoApp is the developer app the tests launch.
const demoApp = "com.example.demo"

// startDevice runs one simulated iPhone with Developer Mode on, the test
// DDI's manifest kept (mounts take the offline branch) and demoApp
// installed.
func startDevice(t testing.TB, realism sim.Realism) (*sim.Fleet, *sim.Device) {
	t.Helper()
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), LockdownKey: testenv.RSAKey(),
		DeveloperMode: true, SeedManifests: []string{testDDI()}, Realism: realism})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("closing the fleet: %v", err)
		}
	})
	d := f.Devices()[0]
	var pkg bytes.Buffer
	if err := ipatest.Build(&pkg, ipatest.Spec{BundleID: demoApp, Name: "Demo", Version: "7", ShortVersion: "1.2", Developer: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apps().InstallFile(context.Background(), bytes.NewReader(pkg.Bytes()), int64(pkg.Len()), nil); err != nil {
		t.Fatal(err)
	}
	return f, d
}

// daemon is an in-process tunneld on ephemeral loopback ports.
type daemon struct {
	d      *tunneld.Daemon
	cancel context.CancelFunc
	done   chan error
}

func startTunneld(t testing.TB, f *sim.Fleet, userspace bool, records string) *daemon {
	t.Helper()
	state := t.TempDir()
	host, err := rsd.LoadOrCreateHostUUID(state)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tunneld.Config{
		Port: -1, GoIOSPort: -1, AppiumPort: -1, APIs: []string{tunneld.APIPMD3, tunneld.APIGoIOS, tunneld.APIAppium},
		Usbmux:    usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}}),
		Userspace: userspace, Records: pairing.RecordStore{Dir: records}, HostName: "launch-interop", HostUUID: host,
	}
	dm := &daemon{done: make(chan error, 1)}
	if dm.d, err = tunneld.New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	dm.cancel = cancel
	go func() { dm.done <- dm.d.Run(ctx) }()
	t.Cleanup(dm.stop)
	return dm
}

func (dm *daemon) stop() {
	if dm.cancel != nil {
		dm.cancel()
		<-dm.done
		dm.cancel = nil
	}
}

func (dm *daemon) pmd3() string  { return dm.d.Addr(tunneld.APIPMD3) }
func (dm *daemon) goios() string { return dm.d.Addr(tunneld.APIGoIOS) }

// rsd waits until tunneld lists udid and returns its RSD address.
func (dm *daemon) rsd(t testing.TB, ctx context.Context, udid string) netip.AddrPort {
	return pmd3wait.RSD(t, ctx, dm.pmd3(), udid)
}

// mount mounts the test DDI through o (offline branch).
func mount(t testing.TB, ctx context.Context, o reach.Opener) {
	t.Helper()
	b, err := ddi.Open(testDDI())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mounter.Mount(ctx, o, mounter.MountConfig{Bundle: b, TSS: &tss.Client{URL: "http://127.0.0.1:1/never"}}); err != nil {
		t.Fatalf("mounting the DDI: %v", err)
	}
}

// buildIOSMux builds the command in the main module.
func buildIOSMux(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "iosmux")
	build := exec.Command("go", "build", "-o", bin, "./cmd/iosmux")
	build.Dir = testenv.RepoDir()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building iosmux: %v\n%s", err, out)
	}
	return bin
}

// iosmux runs the command to completion and returns its stdout.
func iosmux(t testing.TB, ctx context.Context, bin string, env []string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("iosmux %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes()
}

// node runs one of this folder's scripts and returns its stdout.
func node(t testing.TB, ctx context.Context, script string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not installed (scripts/setup.sh installs it): %v", err)
	}
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(testenv.ModuleDir(), "launch", script)}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\n%s%s", script, err, out.String(), errb.String())
	}
	return out.Bytes()
}

// session is a running program driven line by line: what it writes is
// collected, and expect waits for a pattern in what came after the last
// match.
type session struct {
	t    testing.TB
	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex
	out  bytes.Buffer
	seen int
	done chan struct{}
}

func start(t testing.TB, ctx context.Context, env []string, name string, args ...string) *session {
	t.Helper()
	s := &session{t: t, done: make(chan struct{})}
	s.cmd = exec.CommandContext(ctx, name, args...)
	s.cmd.Env = append(os.Environ(), env...)
	var err error
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		r := bufio.NewReader(pr)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				close(s.done)
				return
			}
		}
	}()
	go func() { s.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		s.in.Close()
		s.cmd.Process.Kill()
		<-s.done
	})
	return s
}

// send writes one line to the program's standard input.
func (s *session) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		s.t.Fatalf("writing %q: %v\noutput so far:\n%s", line, err, s.output())
	}
}

func (s *session) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// expect waits up to d for re in the output after the last match and
// returns the submatches.
func (s *session) expect(re string, d time.Duration) []string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	for {
		s.mu.Lock()
		rest := s.out.String()[s.seen:]
		if loc := rx.FindStringSubmatchIndex(rest); loc != nil {
			m := rx.FindStringSubmatch(rest)
			s.seen += loc[1]
			s.mu.Unlock()
			return m
		}
		s.mu.Unlock()
		select {
		case <-s.done:
			s.t.Fatalf("waiting for %q: the program ended\noutput:\n%s", re, s.output())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("waiting for %q: not seen in %s\noutput:\n%s", re, d, s.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitState polls the device's process table until pid is in state.
func waitState(t testing.TB, d *sim.Device, pid int, want sim.ProcessState) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p, ok := d.Processes().Get(pid)
		if ok && p.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: state %v (listed %v), want %v", pid, p.State, ok, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pidOf(t testing.TB, b []byte) int {
	t.Helper()
	var out struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.PID == 0 {
		t.Fatalf("no pid in %s: %v", b, err)
	}
	return out.PID
}
