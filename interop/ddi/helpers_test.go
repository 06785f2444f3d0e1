// Package ddi_test is the acceptance run of Developer Mode and the
// personalized DDI mount against the simulated iPhone, with the clients
// known to work with real ones: go-ios v1.3.2 (Developer Mode, `ios image
// auto`) and libimobiledevice's ideviceimagemounter through usbmuxd,
// appium-ios-remotexpc's mounter over RSD (through iosmux's backend), and
// iosmux's own flow through usbmuxd, through the backend that tunneld
// advertises and through a tunnel of its own, with the fleet's TSS
// stand-in. Everything runs on loopback in one process (userspace
// tunnels); no test reaches the internet.
package ddi_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/iosmux/iosmux/interop/internal/pmd3wait"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/sim/simtest"
	"github.com/iosmux/iosmux/tunneld"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"howett.net/plist"
)

// vectorDDI is the synthetic bundle (its second identity, BoardId 14 /
// ChipID 0x8120, is the first simulated model's).
func vectorDDI() string {
	return filepath.Join(testenv.RepoDir(), "services", "mounter", "ddi", "testdata", "ddi_restore")
}

// copyDDI copies the vector bundle into a new Restore folder under dir,
// with the manifest changed by edit (nil: unchanged) and the image
// replaced by image (nil: unchanged; the manifest's digests follow).
func copyDDI(t testing.TB, dir string, edit func(m map[string]any), image io.Reader) string {
	t.Helper()
	out := filepath.Join(dir, "Restore")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"Image.dmg", "Image.dmg.trustcache"} {
		b, err := os.ReadFile(filepath.Join(vectorDDI(), n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(vectorDDI(), "BuildManifest.plist"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if _, err := plist.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if image != nil {
		f, err := os.Create(filepath.Join(out, "Image.dmg"))
		if err != nil {
			t.Fatal(err)
		}
		h := sha512.New384()
		if _, err := io.Copy(io.MultiWriter(f, h), image); err != nil {
			t.Fatal(err)
		}
		f.Close()
		sum := h.Sum(nil)
		for _, id := range m["BuildIdentities"].([]any) {
			id.(map[string]any)["Manifest"].(map[string]any)["PersonalizedDMG"].(map[string]any)["Digest"] = sum
		}
	}
	if edit != nil {
		edit(m)
	}
	b, err = plist.MarshalIndent(m, plist.XMLFormat, "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "BuildManifest.plist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// withoutRules drops RestoreRequestRules everywhere: a manifest from which
// no EPRO/ESEC can be derived (what TSS refuses with status 94).
func withoutRules(m map[string]any) {
	for _, id := range m["BuildIdentities"].([]any) {
		for _, e := range id.(map[string]any)["Manifest"].(map[string]any) {
			if info, ok := e.(map[string]any)["Info"].(map[string]any); ok {
				delete(info, "RestoreRequestRules")
			}
		}
	}
}

func digestOf(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.Sum384(b)
	return h[:]
}

// startFleet runs the simulated iPhones with the TSS stand-in.
func startFleet(t testing.TB, cfg sim.FleetConfig) *sim.Fleet {
	t.Helper()
	cfg.LockdownKey = testenv.RSAKey()
	cfg.TSSAddr = "127.0.0.1:0"
	return simtest.StartFleet(t, cfg)
}

func muxClient(f *sim.Fleet) *usbmux.Client {
	return usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})
}

// usbDevice waits for d in usbmuxd.
func usbDevice(t testing.TB, ctx context.Context, mux *usbmux.Client, d *sim.Device) usbmux.DeviceEntry {
	t.Helper()
	if err := d.WaitState(ctx, sim.StatePlugged); err != nil {
		t.Fatal(err)
	}
	list, err := mux.ListDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range list {
		if usbmux.SameUDID(u.UDID(), d.UDID()) {
			return u
		}
	}
	t.Fatalf("%s not in usbmuxd", d.UDID())
	return usbmux.DeviceEntry{}
}

// hostTunnel is iosmux's own CoreDeviceProxy tunnel to d (simtest), a
// userspace stack on the host side; it closes at cleanup.
func hostTunnel(t testing.TB, ctx context.Context, mux *usbmux.Client, d *sim.Device) (*utun.Netstack, netip.AddrPort) {
	t.Helper()
	tn := simtest.OpenTunnelWith(t, mux, usbDevice(t, ctx, mux, d).UDID(), establish.Options{}, d)
	return tn.Net, tn.RSD()
}

// daemon is tunneld in advertise-backend mode (what `iosmux tunneld
// --advertise backend` wires): pmd3 and appium APIs on ephemeral loopback
// ports, every tunnel served by a backend on [::1].
type daemon struct {
	d *tunneld.Daemon

	mu       sync.Mutex
	backends map[string]*backend.Backend
}

func startTunneld(t testing.TB, f *sim.Fleet) *daemon {
	t.Helper()
	state := t.TempDir()
	hostUUID, err := rsd.LoadOrCreateHostUUID(state)
	if err != nil {
		t.Fatal(err)
	}
	dm := &daemon{backends: map[string]*backend.Backend{}}
	cfg := tunneld.Config{
		Port: -1, AppiumPort: -1, GoIOSPort: -1, APIs: []string{tunneld.APIPMD3, tunneld.APIAppium},
		Usbmux: muxClient(f), Userspace: true, Records: pairing.RecordStore{Dir: t.TempDir()},
		HostName: "ddi-interop", HostUUID: hostUUID,
		Advertise: func(ctx context.Context, req tunneld.AdvertiseRequest) (tunneld.Advert, error) {
			dm.mu.Lock()
			b := dm.backends[req.UDID]
			if b == nil {
				var err error
				b, err = backend.New(backend.Config{Listen: "[::1]:0", StateDir: filepath.Join(state, "backend"), HostUUID: hostUUID})
				if err != nil {
					dm.mu.Unlock()
					return tunneld.Advert{}, err
				}
				dm.backends[req.UDID] = b
			}
			dm.mu.Unlock()
			if err := b.Attach(ctx, backend.DeviceTunnel{RSD: req.RSD, Dial: req.Dial, Done: req.Done}); err != nil {
				return tunneld.Advert{}, err
			}
			return tunneld.Advert{RSD: b.Addr(), Refresh: b.Refresh, Services: func() []rsdapi.Service {
				h := b.Handshake()
				if h == nil {
					return nil
				}
				var out []rsdapi.Service
				for _, s := range h.Services {
					out = append(out, rsdapi.Service{Name: s.Name, Port: s.Port})
				}
				return out
			}}, nil
		},
	}
	var err2 error
	if dm.d, err2 = tunneld.New(cfg); err2 != nil {
		t.Fatal(err2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dm.d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		dm.mu.Lock()
		defer dm.mu.Unlock()
		for _, b := range dm.backends {
			b.Close()
		}
	})
	return dm
}

func (dm *daemon) backend(udid string) *backend.Backend {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return dm.backends[udid]
}

// pmd3RSD reads pymobiledevice3's listing (GET /) and returns udid's RSD
// address, waiting until the device is listed.
func (dm *daemon) pmd3RSD(t testing.TB, ctx context.Context, udid string) netip.AddrPort {
	return pmd3wait.RSD(t, ctx, dm.d.Addr(tunneld.APIPMD3), udid)
}

// node runs one of the .mjs peers here and returns its stdout.
func node(t testing.TB, ctx context.Context, script string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not installed (scripts/setup.sh installs it): %v", err)
	}
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(testenv.ModuleDir(), "ddi", script)}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\n%s%s", script, err, out.String(), errb.String())
	}
	return out.Bytes()
}

// idevice runs a libimobiledevice tool against the fleet's usbmuxd in a
// private mount namespace with a scratch /var/lib and HOME.
func idevice(t testing.TB, ctx context.Context, f *sim.Fleet, tool string, args ...string) (string, error) {
	t.Helper()
	for _, bin := range []string{tool, "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed (scripts/setup.sh installs libimobiledevice-utils): %v", bin, err)
		}
	}
	scratch := t.TempDir()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private",
		"sh", "-c", `mount --bind "$0" /var/lib && exec "$@"`, scratch, tool)
	cmd.Args = append(cmd.Args, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS=UNIX:"+f.UsbmuxSocket(), "HOME="+scratch)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// buildIOSMux builds the iosmux command.
func buildIOSMux(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "iosmux")
	// Built in the main module, whose go.mod lists the command's own
	// dependencies (cobra and the like).
	build := exec.Command("go", "build", "-o", bin, "./cmd/iosmux")
	build.Dir = testenv.RepoDir()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building iosmux: %v\n%s", err, out)
	}
	return bin
}

func fmtAddr(a netip.AddrPort) (string, string) {
	return a.Addr().String(), fmt.Sprint(a.Port())
}

// loopbackRSD forwards a loopback port to addr through dial (so a process
// of its own, such as `iosmux rsd-info`, reaches a userspace tunnel).
func loopbackRSD(t testing.TB, addr netip.AddrPort, dial utun.DialFunc) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fwd := utun.NewForwarder(ln, addr, dial, nil)
	t.Cleanup(func() { fwd.Close() })
	return fwd.Addr().(*net.TCPAddr).AddrPort()
}

var netDialer net.Dialer

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}
