// Package logs_test is the acceptance run of the device's logs and crash
// reports against the simulated iPhone, with the clients known to work
// with real ones: libimobiledevice's idevicesyslog and idevicecrashreport
// through usbmuxd, go-ios v1.3.2's syslog and crash report library calls,
// appium-ios-remotexpc's syslog service over RSD, and iosmux's own
// commands. Everything runs on loopback (userspace tunnels); nothing
// reaches the internet.
package logs_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/sim/simtest"
	"github.com/iosmux/iosmux/usbmux"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rig is one simulated iPhone behind the fleet's usbmuxd, paired with
// this host over lockdown (the record saved in usbmuxd, as idevicepair
// leaves it), so every usbmuxd client can start its services.
type rig struct {
	f   *sim.Fleet
	d   *sim.Device
	mux *usbmux.Client
	dev usbmux.DeviceEntry
}

func newRig(t testing.TB, cfg sim.FleetConfig) *rig {
	t.Helper()
	cfg.Count = 1
	if cfg.LockdownKey == nil {
		cfg.LockdownKey = testenv.RSAKey()
	}
	if cfg.Profile.Name == "" {
		cfg.Profile = sim.MustProfile("17.4")
	}
	f, err := sim.StartFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("closing the fleet: %v", err)
		}
	})
	r := &rig{f: f, d: f.Devices()[0], mux: usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})}
	ctx := testCtx(t)
	list, err := r.mux.ListDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	if r.dev, ok = usbmux.FindDevice(list, r.d.UDID()); !ok {
		t.Fatalf("usbmuxd does not list %s", r.d.UDID())
	}
	if _, err := lockdown.PairUsbmux(ctx, r.mux, r.dev, lockdown.PairOptions{HostName: "logs-interop"}); err != nil {
		t.Fatalf("pairing: %v", err)
	}
	return r
}

// tunnelBackend opens a CoreDeviceProxy tunnel with iosmux's host side
// (userspace stack) and serves its trusted RSD on loopback through
// iosmux's backend, which forwards every listed service: what a separate
// process (node, the iosmux command) reaches the device's RSD by.
func (r *rig) tunnelBackend(t testing.TB) netip.AddrPort {
	t.Helper()
	ctx := testCtx(t)
	tn := simtest.OpenTunnelWith(t, r.mux, r.dev.UDID(), establish.Options{}, nil)
	state := t.TempDir()
	host, err := rsd.LoadOrCreateHostUUID(state)
	if err != nil {
		t.Fatal(err)
	}
	b, err := backend.New(backend.Config{Listen: "127.0.0.1:0", StateDir: filepath.Join(state, "backend"), HostUUID: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Attach(ctx, backend.DeviceTunnel{RSD: tn.RSD(), Dial: tn.DialContext}); err != nil {
		t.Fatal(err)
	}
	return b.Addr()
}

// command is a peer process whose output a test reads while it runs.
type command struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	errb bytes.Buffer
	done chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// start runs name with args and env added to this process's environment;
// it is killed at cleanup.
func start(t testing.TB, env []string, name string, args ...string) *command {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not installed (scripts/setup.sh installs it): %v", name, err)
	}
	c := &command{cmd: exec.Command(name, args...), done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout = lockedWriter{&c.mu, &c.out}
	c.cmd.Stderr = lockedWriter{&c.mu, &c.errb}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.stop)
	return c
}

func (c *command) stop() {
	select {
	case <-c.done:
	default:
		c.cmd.Process.Kill()
		<-c.done
	}
}

// output returns what the process printed so far.
func (c *command) output() (stdout, stderr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String(), c.errb.String()
}

// waitOutput waits until ok accepts the output so far, the process ends,
// or ctx does; it returns the last output it saw.
func (c *command) waitOutput(ctx context.Context, ok func(stdout string) bool) (string, bool) {
	for {
		out, _ := c.output()
		if ok(out) {
			return out, true
		}
		select {
		case <-c.done:
			out, _ = c.output()
			return out, ok(out)
		case <-ctx.Done():
			return out, false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// buildIOSMux builds the iosmux command once per test binary.
var iosmuxBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "logs-interop-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "iosmux")
	build := exec.Command("go", "build", "-o", bin, "github.com/iosmux/iosmux/cmd/iosmux")
	build.Dir = testenv.RepoDir()
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building iosmux: %v\n%s", err, out)
	}
	return bin, nil
})

func buildIOSMux(t testing.TB) string {
	t.Helper()
	bin, err := iosmuxBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// lineCounter counts the lines written to it and keeps the last one, for
// output too large to keep.
type lineCounter struct {
	mu    sync.Mutex
	n     int
	last  []byte
	cur   []byte
	match []byte // if set, only lines containing it count
}

func (w *lineCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range p {
		if c != '\n' {
			w.cur = append(w.cur, c)
			continue
		}
		if w.match == nil || bytes.Contains(w.cur, w.match) {
			w.n++
		}
		w.last, w.cur = append(w.last[:0], w.cur...), w.cur[:0]
	}
	return len(p), nil
}

func (w *lineCounter) count() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, string(w.last)
}

// peakRSS is a running process's peak resident memory (Linux VmHWM).
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
