// Package backend_test runs third-party RSD clients known to work with real
// iPhones — appium-ios-remotexpc and go-ios v1.3.2 — against
// github.com/iosmux/iosmux/backend serving a simulated iPhone through a
// tunnel: they read the Handshake (the device's Properties), use services
// through the backend's forwarders, pair with the backend and tunnel
// through it (goiosbackend/, a module of its own), and two of them at once
// leave an iOS 27.2 device's ports alone.
package backend_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/sim/simtest"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// rig is a simulated iPhone, iosmux's userspace tunnel to it, and a backend
// serving it on [::1] (appium's RemoteXPC transport dials IPv6 only).
type rig struct {
	dev    *sim.Device
	ns     *utun.Netstack
	params tunnel.Params
	b      *backend.Backend
	// device is the device's own Handshake, read straight from its
	// trusted RSD before the backend attached.
	device *rsd.Handshake
	// stateDir is the backend's StateDir.
	stateDir string
}

func newRig(t testing.TB, profile string, tweak func(*backend.Config)) *rig {
	t.Helper()
	dir, err := os.MkdirTemp("", "backend-interop-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile(profile), SocketPath: dir + "/usbmuxd", LockdownKey: testenv.RSAKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r := &rig{dev: f.Devices()[0], stateDir: dir}
	pump := r.openTunnel(t, f.UsbmuxSocket())
	hostUUID, err := rsd.LoadOrCreateHostUUID(dir)
	if err != nil {
		t.Fatal(err)
	}
	rsdAddr := netip.AddrPortFrom(r.params.ServerAddress, r.params.ServerRSDPort)
	ctx := testCtx(t)
	nc, err := r.ns.DialContext(ctx, "tcp", rsdAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: hostUUID})
	if err != nil {
		t.Fatal(err)
	}
	r.device = c.Handshake
	c.Close()
	cfg := backend.Config{Listen: "[::1]:0", StateDir: dir, HostUUID: hostUUID,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	if tweak != nil {
		tweak(&cfg)
	}
	r.b, err = backend.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.b.Close() })
	if err := r.b.Attach(ctx, backend.DeviceTunnel{RSD: rsdAddr, Dial: r.ns.DialContext, Done: pump.Done()}); err != nil {
		t.Fatal(err)
	}
	return r
}

// openTunnel pairs over lockdown and opens a CoreDeviceProxy tunnel ending
// in a userspace stack (iosmux's host side, simtest).
func (r *rig) openTunnel(t testing.TB, socket string) *simtest.Tunnel {
	t.Helper()
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: socket}})
	tn := simtest.OpenTunnelWith(t, mux, r.dev.UDID(), establish.Options{}, r.dev)
	r.ns, r.params = tn.Net, tn.Params
	return tn
}

// port is the backend's port for a service, from its Handshake.
func (r *rig) port(t testing.TB, name string) int {
	t.Helper()
	s, ok := r.b.Handshake().Service(name)
	if !ok {
		t.Fatalf("backend lists no %s", name)
	}
	return int(s.Port)
}

// node runs an interop script and decodes its JSON output into v.
func node(t testing.TB, v any, script string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join("backend", script)}, args...)...)
	cmd.Dir = testenv.ModuleDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s %v: %v\nstdout: %s\nstderr: %s", script, args, err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		t.Fatalf("node %s output %q: %v", script, stdout.String(), err)
	}
}

// appiumView renders XPC values as appium's decoder returns them, after
// the script's JSON replacer: integers as numbers while they are safe
// (|v| < 2^53) and decimal strings beyond, uuids and data as plain hex.
func appiumView(v xpc.Value) any {
	const maxSafe = 1<<53 - 1
	switch v := v.(type) {
	case *xpc.Dict:
		m := map[string]any{}
		for k, e := range v.All() {
			m[k] = appiumView(e)
		}
		return m
	case xpc.Array:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = appiumView(e)
		}
		return a
	case xpc.String:
		return string(v)
	case xpc.Bool:
		return bool(v)
	case xpc.Int64:
		if v >= -maxSafe && v <= maxSafe {
			return float64(v)
		}
		return fmt.Sprint(int64(v))
	case xpc.Uint64:
		if v <= maxSafe {
			return float64(v)
		}
		return fmt.Sprint(uint64(v))
	case xpc.Double:
		if math.IsInf(float64(v), 0) || math.IsNaN(float64(v)) {
			return nil
		}
		return float64(v)
	case xpc.UUID:
		return hex.EncodeToString(v[:])
	case xpc.Data:
		return hex.EncodeToString(v)
	case xpc.Null:
		return nil
	}
	return fmt.Sprintf("unsupported %v", v.Kind())
}

// sameJSON compares two trees after a JSON round trip of each.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var x, y any
	json.Unmarshal(ja, &x)
	json.Unmarshal(jb, &y)
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

type appiumHandshake struct {
	Discovered []struct {
		ServiceName string `json:"serviceName"`
		Port        string `json:"port"`
	} `json:"discovered"`
	UUID       string         `json:"uuid"`
	Properties map[string]any `json:"properties"`
	Services   map[string]any `json:"services"`
}

type appiumShim struct {
	Checkin      string `json:"checkin"`
	StartService string `json:"startService"`
	UDID         string `json:"udid"`
}

// checkAppium runs appium's RSD client and a lockdown shim through the
// backend and compares with the device.
func checkAppium(t testing.TB, r *rig) {
	t.Helper()
	port := fmt.Sprint(r.b.Addr().Port())
	var h appiumHandshake
	node(t, &h, "appium_backend.mjs", "handshake", "::1", port)
	if !sameJSON(h.Properties, appiumView(r.device.Properties)) {
		t.Errorf("appium read Properties %v\nwant the device's %v", h.Properties, appiumView(r.device.Properties))
	}
	ours := r.b.Handshake()
	if h.UUID != hex.EncodeToString(ours.UUID[:]) || ours.UUID == r.device.UUID {
		t.Errorf("appium read UUID %s; backend's %v, device's %v", h.UUID, ours.UUID, r.device.UUID)
	}
	if len(h.Discovered) != len(ours.Services) || len(h.Services) != len(ours.Services) {
		t.Errorf("appium discovered %d services (%d in the body), backend lists %d", len(h.Discovered), len(h.Services), len(ours.Services))
	}
	for _, d := range h.Discovered {
		s, ok := ours.Service(d.ServiceName)
		if !ok || d.Port != fmt.Sprint(s.Port) || h.Services[d.ServiceName] != d.Port {
			t.Errorf("appium discovered %s at %s; backend has %v", d.ServiceName, d.Port, s.Port)
		}
	}
	var s appiumShim
	node(t, &s, "appium_backend.mjs", "shim", "::1", fmt.Sprint(r.port(t, sim.LockdownTrusted)))
	if s.Checkin != "RSDCheckin" || s.StartService != "StartService" || s.UDID != r.dev.UDID() {
		t.Errorf("appium through the lockdown shim forwarder: %+v (device %s)", s, r.dev.UDID())
	}
}

// TestAppium: appium-ios-remotexpc's RSD client reads the backend's
// Handshake — the device's Properties, the backend's UUID, every service —
// and talks lockdown through a forwarder.
func TestAppium(t *testing.T) {
	r := newRig(t, "18.2", nil)
	checkAppium(t, r)
}

// TestGoIOS: go-ios's RSD client (in process) reads the Handshake with the
// device's Properties and uses the lockdown shim, the byte source and the
// byte sink through forwarders.
func TestGoIOS(t *testing.T) {
	r := newRig(t, "18.2", nil)
	checkGoIOS(t, r, 4<<20)
}

// TestTwoClientsOneDevicePeer: appium and go-ios at once (each its own RSD
// session with the backend, go-ios twice), against an iOS 27.2 device that
// closes every service port when its RSD peer changes: no port closes,
// because the device only ever sees the backend.
func TestTwoClientsOneDevicePeer(t *testing.T) {
	r := newRig(t, "27.2", nil)
	before := map[string]uint16{}
	for _, s := range r.device.Services {
		before[s.Name] = r.dev.TrustedService(s.Name)
	}
	// A connection through a forwarder opened before the clients come
	// must survive them (a re-attach would cut it).
	echo, err := net.Dial("tcp", net.JoinHostPort("::1", fmt.Sprint(r.port(t, sim.EchoService))))
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	echoOnce := func(what string) {
		t.Helper()
		echo.SetDeadline(time.Now().Add(time.Minute))
		msg := []byte("still here: " + what)
		if _, err := echo.Write(msg); err != nil {
			t.Fatalf("echo %s: %v", what, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(echo, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo %s: %q, %v", what, got, err)
		}
	}
	echoOnce("before")
	t.Run("at once", func(t *testing.T) {
		t.Run("appium", func(t *testing.T) { t.Parallel(); checkAppium(t, r) })
		t.Run("go-ios 1", func(t *testing.T) { t.Parallel(); checkGoIOS(t, r, 8<<20) })
		t.Run("go-ios 2", func(t *testing.T) { t.Parallel(); checkGoIOS(t, r, 8<<20) })
		// appium and go-ios send no host Handshake; pymobiledevice3 sends
		// one with its host's UUID, which straight at an iOS 27.2 device
		// moves every port (backend's TestOneDevicePeer shows that).
		t.Run("pymobiledevice3-style host UUID", func(t *testing.T) {
			t.Parallel()
			u, _ := xpc.NewRandomUUID(nil)
			nc, err := net.Dial("tcp", r.b.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c, err := rsd.NewClient(testCtx(t), nc, &rsd.ClientConfig{HostUUID: u})
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		})
	})
	echoOnce("after")
	if st := r.dev.Stats(); st.Reattaches != 0 {
		t.Errorf("the device re-attached (closed its service ports) %d times", st.Reattaches)
	}
	for name, port := range before {
		if now := r.dev.TrustedService(name); now != port {
			t.Errorf("%s moved from port %d to %d", name, port, now)
		}
	}
}
