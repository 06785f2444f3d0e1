// Package usbmux_test runs iosmux's usbmux and lockdown roles against
// independent peers: Debian's usbmuxd daemon (our client), libimobiledevice's
// tools and go-ios v1.3.2 (our server and device roles).
package usbmux_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

// simDevice describes one simulated iPhone of a rig.
type simDevice struct {
	UDID    string // as lockdownd reports it
	Serial  string // as usbmuxd reports it (Linux drops the dash)
	Name    string
	Version string
}

// rig is our usbmux server on a UNIX socket with simulated iPhones, each a
// lockdown.Server offering CoreDeviceProxy (an echo service over TLS).
type rig struct {
	path string
	srv  *usbmux.Server
	mux  *usbmux.Client
	devs map[string]*lockdown.Server // by UDID
	ids  map[string]uint32           // usbmux DeviceID by UDID

	mu          sync.Mutex
	tlsVersions map[string][]uint16 // session TLS versions by UDID
}

func newRig(t *testing.T, devices ...simDevice) *rig {
	t.Helper()
	dir, err := os.MkdirTemp("", "iosmux-mux")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{
		path: filepath.Join(dir, "usbmuxd"),
		srv:  usbmux.NewServer(usbmux.ServerConfig{}),
		devs: map[string]*lockdown.Server{},
		ids:  map[string]uint32{},

		tlsVersions: map[string][]uint16{},
	}
	for _, sd := range devices {
		udid := sd.UDID
		ports := usbmux.NewPortMux(0)
		dev, err := lockdown.NewServer(lockdown.ServerConfig{
			Values: map[string]any{
				"UniqueDeviceID":          sd.UDID,
				"ProductVersion":          sd.Version,
				"ProductType":             "iPhone15,2",
				"BuildVersion":            "21F79",
				"DeviceClass":             "iPhone",
				"DeviceName":              sd.Name,
				"SerialNumber":            "F2L" + sd.UDID[len(sd.UDID)-9:],
				"UniqueChipID":            uint64(0x1A2B3C0E01401E),
				"WiFiAddress":             "aa:bb:cc:dd:ee:ff",
				"CPUArchitecture":         "arm64e",
				"SupportedDeviceFamilies": []any{uint64(1)},
				"TimeIntervalSince1970":   1.7e9,
			},
			Services: map[string]lockdown.ServiceHandler{
				lockdown.CoreDeviceProxy: {SSL: true, Serve: func(c net.Conn) { io.Copy(c, c) }},
			},
			Ports:  ports,
			Logger: debugLogger(),
			OnSession: func(_ string, st tls.ConnectionState) {
				r.mu.Lock()
				defer r.mu.Unlock()
				r.tlsVersions[udid] = append(r.tlsVersions[udid], st.Version)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ports.Handle(lockdown.Port, dev.ServeConn)
		r.devs[sd.UDID] = dev
		r.ids[sd.UDID] = r.srv.AddDevice(usbmux.DeviceEntry{SerialNumber: sd.Serial, ConnectionType: usbmux.ConnectionUSB, ProductID: 4776, LocationID: 339881984, ConnectionSpeed: 480000000}, ports)
	}
	l, err := net.Listen("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(l) }()
	t.Cleanup(func() {
		for _, d := range r.devs {
			d.Close()
		}
		r.srv.Close()
		if err := <-done; err != nil {
			t.Errorf("usbmux server: %v", err)
		}
		os.RemoveAll(dir)
	})
	r.mux = usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: r.path}})
	return r
}

// sessionTLS returns the TLS versions of the sessions device udid served.
func (r *rig) sessionTLS(udid string) []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.tlsVersions[udid])
}

// pair pairs the host with udid through our own lockdown client and stores
// the record in the rig's usbmuxd, as `idevicepair pair` would.
func (r *rig) pair(t *testing.T, udid string) *lockdown.PairRecord {
	t.Helper()
	ctx := testCtx(t)
	buid, err := r.mux.ReadBUID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := lockdown.DialUsbmux(ctx, r.mux, r.ids[udid], lockdown.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	rec, err := lc.Pair(ctx, lockdown.PairConfig{SystemBUID: buid, HostName: "interop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := lockdown.SavePairRecord(ctx, r.mux, udid, r.ids[udid], rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// needTool fails the test when a peer is missing: a missing peer is a
// broken test machine, never a reason to skip.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (install %s; scripts/setup.sh does): %v", name, pkgOf(name), err)
	}
	return p
}

func pkgOf(tool string) string {
	switch tool {
	case "usbmuxd":
		return "usbmuxd"
	case "unshare", "mount":
		return "util-linux"
	}
	return "libimobiledevice-utils"
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// debugLogger shows the device role's per-request log when
// IOSMUX_INTEROP_DEBUG is set, to diagnose a failing peer.
func debugLogger() *slog.Logger {
	if os.Getenv("IOSMUX_INTEROP_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
