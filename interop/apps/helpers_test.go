// Package apps_test is the acceptance run of AFC, house_arrest,
// installation_proxy and the streaming zip conduit against the simulated
// iPhone, with the clients known to work with real ones: Debian's
// ideviceinstaller through usbmuxd, go-ios v1.3.2's zip conduit,
// installation_proxy and AFC clients (library calls, through usbmuxd),
// appium-ios-remotexpc's installation proxy and AFC services over RSD
// (through iosmux's backend on [::1], a userspace tunnel behind it), and the
// iosmux command itself. One simulated device serves every test of the
// package; everything runs on loopback.
package apps_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	ios "github.com/danielpaulus/go-ios/ios"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
)

// rig is the package's one simulated iPhone, paired through usbmuxd, with
// a backend serving its trusted RSD on [::1] for the RSD clients.
type rig struct {
	f     *sim.Fleet
	dev   *sim.Device
	mux   *usbmux.Client
	state string
	// outside is a folder next to the device's AFC tree that no request
	// may reach; its hash is compared after the run.
	outside string

	rsdOnce sync.Once
	b       *backend.Backend
	rsdErr  error
	tn      *establish.Tunnel

	binOnce sync.Once
	bin     string
	binErr  error
}

var shared *rig

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	state, err := os.MkdirTemp("", "apps-interop-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(state)
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), StateDir: filepath.Join(state, "sim"), LockdownKey: testenv.RSAKey()})
	if err != nil {
		return 0, err
	}
	r := &rig{f: f, dev: f.Devices()[0], state: state,
		mux: usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})}
	defer func() {
		if r.tn != nil {
			r.tn.Close()
		}
		if r.b != nil {
			r.b.Close()
		}
		f.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := lockdown.PairUsbmux(ctx, r.mux, r.usbDevice(ctx), lockdown.PairOptions{HostName: "apps-interop"}); err != nil {
		return 0, fmt.Errorf("pairing: %w", err)
	}
	// The folder beside the tree: a sibling of Media in the device's
	// state folder, holding a file.
	r.outside = filepath.Join(filepath.Dir(r.dev.Media()), "outside")
	os.MkdirAll(r.outside, 0o755)
	os.WriteFile(filepath.Join(r.outside, "secret"), []byte("SECRET"), 0o644)
	// go-ios reads the usbmuxd address from the environment.
	os.Setenv("USBMUXD_SOCKET_ADDRESS", "unix://"+f.UsbmuxSocket())
	shared = r
	return m.Run(), nil
}

func (r *rig) usbDevice(ctx context.Context) usbmux.DeviceEntry {
	list, err := r.mux.ListDevices(ctx)
	if err == nil {
		for _, u := range list {
			if usbmux.SameUDID(u.UDID(), r.dev.UDID()) {
				return u
			}
		}
	}
	panic(fmt.Sprintf("%s not in usbmuxd: %v", r.dev.UDID(), err))
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// lockdownOpener is iosmux's opener through usbmuxd.
func (r *rig) lockdownOpener(t testing.TB) *reach.Lockdown {
	t.Helper()
	lo, err := reach.NewLockdown(testCtx(t), r.mux, r.dev.UDID())
	if err != nil {
		t.Fatal(err)
	}
	return lo
}

// backendRSD opens (once) iosmux's CoreDeviceProxy tunnel to the device,
// ending in a userspace stack, and a backend serving the device's RSD on
// [::1] (appium's transports dial IPv6), and returns that RSD's address.
func (r *rig) backendRSD(t testing.TB) netip.AddrPort {
	t.Helper()
	r.rsdOnce.Do(func() { r.rsdErr = r.startBackend() })
	if r.rsdErr != nil {
		t.Fatal(r.rsdErr)
	}
	return r.b.Addr()
}

func (r *rig) startBackend() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ns *utun.Netstack
	tn, err := establish.Establish(ctx, discovery.UsbmuxSighting(r.usbDevice(ctx)), establish.Options{Usbmux: r.mux,
		NewTUN: func(p tunnel.Params) (tun.Device, error) {
			var err error
			ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
			return ns, err
		}})
	if err != nil {
		return fmt.Errorf("tunnel: %w", err)
	}
	r.tn = tn
	dir := filepath.Join(r.state, "backend")
	host, err := rsd.LoadOrCreateHostUUID(dir)
	if err != nil {
		return err
	}
	r.b, err = backend.New(backend.Config{Listen: "[::1]:0", StateDir: dir, HostUUID: host, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	return r.b.Attach(ctx, backend.DeviceTunnel{RSD: tn.RSD(), Dial: ns.DialContext, Done: tn.Done()})
}

// rsdOpener is iosmux's opener through the backend's RSD.
func (r *rig) rsdOpener(t testing.TB) *reach.RSD {
	t.Helper()
	o, err := reach.NewRSD(testCtx(t), nil, r.backendRSD(t), reach.RSDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// appiumStep is one step of appium_apps.mjs and its result.
type appiumStep struct {
	Op     string          `json:"op"`
	OK     bool            `json:"ok"`
	MS     float64         `json:"ms"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

// appium runs appium_apps.mjs over the backend's RSD.
func (r *rig) appium(t testing.TB, steps ...map[string]any) []appiumStep {
	t.Helper()
	out, _ := r.appiumRun(t, steps...)
	return out
}

// appiumRun also returns the node process's CPU time.
func (r *rig) appiumRun(t testing.TB, steps ...map[string]any) ([]appiumStep, time.Duration) {
	t.Helper()
	return appiumAt(t, r.dev.UDID(), r.backendRSD(t), steps...)
}

// appiumAt runs appium_apps.mjs against the RSD at addr.
func appiumAt(t testing.TB, udid string, addr netip.AddrPort, steps ...map[string]any) ([]appiumStep, time.Duration) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not installed (scripts/setup.sh installs it): %v", err)
	}
	plan, _ := json.Marshal(steps)
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(testenv.ModuleDir(), "apps", "appium_apps.mjs"),
		udid, addr.Addr().String(), fmt.Sprint(addr.Port()), string(plan))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("node appium_apps.mjs: %v\n%s%s", err, out.String(), errb.String())
	}
	var res []appiumStep
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res) != len(steps) {
		t.Fatalf("appium output %q: %v", out.String(), err)
	}
	return res, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// goiosDevice is go-ios's entry for the device, from its usbmuxd client.
func (r *rig) goiosDevice(t testing.TB) ios.DeviceEntry {
	t.Helper()
	d, err := ios.GetDevice(r.dev.UDID())
	if err != nil {
		t.Fatalf("go-ios: %v", err)
	}
	return d
}

// idevice runs a libimobiledevice tool against the fleet's usbmuxd in a
// private mount namespace with a scratch /var/lib and HOME, so nothing it
// writes reaches this machine.
func (r *rig) idevice(t testing.TB, tool string, args ...string) (string, error) {
	t.Helper()
	out, _, err := r.ideviceRun(t, tool, args...)
	return out, err
}

func (r *rig) ideviceRun(t testing.TB, tool string, args ...string) (string, time.Duration, error) {
	return runIdevice(t, r.f.UsbmuxSocket(), tool, args...)
}

// runIdevice runs tool against the usbmuxd at sock; it also returns the
// tool's CPU time.
func runIdevice(t testing.TB, sock, tool string, args ...string) (string, time.Duration, error) {
	t.Helper()
	for _, bin := range []string{tool, "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed (scripts/setup.sh installs it): %v", bin, err)
		}
	}
	scratch := t.TempDir()
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private",
		"sh", "-c", `mount --bind "$0" /var/lib && exec "$@"`, scratch, tool)
	cmd.Args = append(cmd.Args, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS=UNIX:"+sock, "HOME="+scratch)
	out, err := cmd.CombinedOutput()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return string(out), cpu, err
}

// iosmux builds (once) and runs the iosmux command against the fleet.
func (r *rig) iosmux(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	out, _, err := r.iosmuxRun(t, args...)
	return out, err
}

func (r *rig) iosmuxRun(t testing.TB, args ...string) ([]byte, time.Duration, error) {
	t.Helper()
	r.binOnce.Do(func() {
		r.bin = filepath.Join(r.state, "iosmux")
		build := exec.Command("go", "build", "-o", r.bin, "./cmd/iosmux")
		build.Dir = testenv.RepoDir()
		if out, err := build.CombinedOutput(); err != nil {
			r.binErr = fmt.Errorf("building iosmux: %v\n%s", err, out)
		}
	})
	if r.binErr != nil {
		t.Fatal(r.binErr)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bin, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS=UNIX:"+r.f.UsbmuxSocket(), "IOSMUX_STATE_DIR="+filepath.Join(r.state, "cli"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("iosmux %v: %w\n%s", args, err, errb.String())
	}
	return out.Bytes(), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), err
}

// hashTree hashes every path, type, size and content under dir.
func hashTree(t testing.TB, dir string) [32]byte {
	t.Helper()
	h := sha256.New()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00", rel, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			f, _ := os.Open(p)
			io.Copy(h, f)
			f.Close()
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			io.WriteString(h, l)
		}
		return nil
	})
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func fileHash(t testing.TB, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
