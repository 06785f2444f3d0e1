package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/sim/simtest"
	"github.com/iosmux/iosmux/usbmux"
)

const testDDI = "../../services/mounter/ddi/testdata/ddi_restore"

// devRig is one simulated iPhone (the model the test DDI has an identity
// for) behind the simulated usbmuxd, paired, with the TSS stand-in.
type devRig struct {
	f   *sim.Fleet
	dev *sim.Device
	mux *usbmux.Client
	env map[string]string
}

func newDevRig(t *testing.T) *devRig {
	t.Helper()
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), StateDir: t.TempDir(),
		TSSAddr: "127.0.0.1:0", RebootDown: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r := &devRig{f: f, dev: f.Devices()[0], mux: usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := r.mux.ListDevices(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("usbmuxd lists %v, %v", list, err)
	}
	if _, err := lockdown.PairUsbmux(ctx, r.mux, list[0], lockdown.PairOptions{HostName: "cli-test"}); err != nil {
		t.Fatal(err)
	}
	r.env = map[string]string{"USBMUXD_SOCKET_ADDRESS": "UNIX:" + f.UsbmuxSocket(), "IOSMUX_STATE_DIR": t.TempDir(),
		"IOSMUX_TSS_URL": f.TSSURL(), "XDG_CACHE_HOME": t.TempDir()}
	return r
}

// run runs an iosmux command line and decodes its --json output into v
// (when not nil).
func (r *devRig) run(t *testing.T, v any, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := execIn(ctx, &out, &errb, r.env, args...)
	if err == nil && v != nil {
		if jerr := json.Unmarshal(out.Bytes(), v); jerr != nil {
			t.Fatalf("iosmux %v: %v\n%s", args, jerr, out.String())
		}
	}
	if err != nil {
		t.Logf("iosmux %v: %v\n%s%s", args, err, out.String(), errb.String())
	}
	return err
}

// TestAMFIAndMounterCommands: Developer Mode status and enable (through a
// tunnel opened for the command, following the reboot), the mounter
// queries, auto-mount through TSS, list, already mounted, umount, and an
// auto-mount with --download from a local server (the device keeps the
// manifest: no TSS), all through usbmuxd; then through an RSD (--rsd, a
// backend serving the device).
func TestAMFIAndMounterCommands(t *testing.T) {
	r := newDevRig(t)
	var st struct {
		DeveloperMode bool `json:"developerMode"`
		AlreadyOn     bool `json:"alreadyOn"`
	}
	if err := r.run(t, &st, "amfi", "status", "--json"); err != nil || st.DeveloperMode {
		t.Fatalf("amfi status: %+v, %v", st, err)
	}
	// Without Developer Mode the mount is refused early, naming the fix.
	var errb bytes.Buffer
	err := execIn(context.Background(), io.Discard, &errb, r.env, "mounter", "auto-mount", "--ddi", testDDI)
	if err == nil || !strings.Contains(err.Error(), "amfi enable") {
		t.Errorf("auto-mount with Developer Mode off: %v", err)
	}
	// Enable through a tunnel of its own: after the reboot the command
	// opens another one to accept.
	if err := r.run(t, &st, "amfi", "enable", "--open-tunnel", "--json"); err != nil || !st.DeveloperMode || st.AlreadyOn {
		t.Fatalf("amfi enable --open-tunnel: %+v, %v", st, err)
	}
	if err := r.run(t, &st, "amfi", "enable", "--json"); err != nil || !st.AlreadyOn {
		t.Errorf("amfi enable again: %+v, %v", st, err)
	}

	var ids map[string]any
	if err := r.run(t, &ids, "mounter", "query-identifiers", "--json"); err != nil || ids["BoardId"] != float64(14) {
		t.Errorf("query-identifiers: %v, %v", ids, err)
	}
	var nonce struct{ Nonce string }
	if err := r.run(t, &nonce, "mounter", "query-nonce", "--json"); err != nil || len(nonce.Nonce) != 64 {
		t.Errorf("query-nonce: %+v, %v", nonce, err)
	}
	var res struct {
		AlreadyMounted bool
		Manifest       string
		Bytes          int64
	}
	if err := r.run(t, &res, "mounter", "auto-mount", "--ddi", testDDI, "--json"); err != nil || res.Manifest != "tss" || res.Bytes != 960 {
		t.Fatalf("auto-mount: %+v, %v", res, err)
	}
	var list struct{ Mounted bool }
	if err := r.run(t, &list, "mounter", "list", "--json"); err != nil || !list.Mounted {
		t.Errorf("list: %+v, %v", list, err)
	}
	res.AlreadyMounted = false
	if err := r.run(t, &res, "mounter", "auto-mount", "--json"); err != nil || !res.AlreadyMounted {
		t.Errorf("auto-mount while mounted: %+v, %v", res, err)
	}
	if err := r.run(t, nil, "mounter", "umount"); err != nil {
		t.Fatal(err)
	}
	if err := r.run(t, nil, "mounter", "umount"); err == nil || !strings.Contains(err.Error(), "no developer disk image is mounted") {
		t.Errorf("umount with nothing mounted: %v", err)
	}

	// --download from a local server into the cache, then the mount from
	// the manifest the device kept (no new TSS request).
	srv := httptest.NewServer(http.StripPrefix("/ddi/", http.FileServer(http.Dir(testDDI))))
	defer srv.Close()
	before := r.f.TSS().Requests()
	cache := t.TempDir()
	res = struct {
		AlreadyMounted bool
		Manifest       string
		Bytes          int64
	}{}
	if err := r.run(t, &res, "mounter", "auto-mount", "--download", "--download-url", srv.URL+"/ddi/", "--ddi-cache", cache, "--json"); err != nil ||
		res.Manifest != "device" || r.f.TSS().Requests() != before {
		t.Fatalf("auto-mount --download: %+v, %v (TSS requests %d → %d)", res, err, before, r.f.TSS().Requests())
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "*", "BuildManifest.plist")); len(m) != 1 {
		t.Errorf("the cache holds %v, want one downloaded DDI", m)
	}

	// Through an RSD: a backend serving the device on loopback.
	addr := serveBackend(t, r)
	host, port := addr.Addr().String(), strconv.Itoa(int(addr.Port()))
	if err := r.run(t, &list, "mounter", "list", "--rsd", host, port, "--json"); err != nil || !list.Mounted {
		t.Errorf("list --rsd: %+v, %v", list, err)
	}
	if err := r.run(t, &st, "amfi", "status", "--rsd", host, port, "--json"); err != nil || !st.DeveloperMode {
		t.Errorf("amfi status --rsd: %+v, %v", st, err)
	}
	if err := r.run(t, nil, "mounter", "list", "--rsd", host, port, "--udid", r.dev.UDID()); !isUsage(err) {
		t.Errorf("--rsd with --udid: %v, want a usage error", err)
	}
	// Through a tunnel opened for the command.
	var lst struct {
		Mounted bool
		Entries []struct{ MountPath string }
	}
	if err := r.run(t, &lst, "mounter", "list", "--open-tunnel", "--json"); err != nil || !lst.Mounted || len(lst.Entries) != 1 {
		t.Errorf("list --open-tunnel: %+v, %v", lst, err)
	}
	if err := r.run(t, nil, "mounter", "list", "--open-tunnel", "--rsd", host, port); !isUsage(err) {
		t.Errorf("--open-tunnel with --rsd: %v, want a usage error", err)
	}
	if err := r.run(t, nil, "mounter", "mount"); !isUsage(err) {
		t.Errorf("mount without --ddi: %v, want a usage error", err)
	}
}

// serveBackend opens a userspace tunnel to the device and serves it with a
// backend on loopback; it returns the backend's RSD.
func serveBackend(t *testing.T, r *devRig) netip.AddrPort {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, _ := r.mux.ListDevices(ctx)
	tn := simtest.OpenTunnelWith(t, r.mux, list[0].UDID(), establish.Options{}, nil)
	dir := t.TempDir()
	u, err := rsd.LoadOrCreateHostUUID(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := backend.New(backend.Config{Listen: "127.0.0.1:0", StateDir: dir, HostUUID: u})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Attach(ctx, backend.DeviceTunnel{RSD: tn.RSD(), Dial: tn.DialContext, Done: tn.Done()}); err != nil {
		t.Fatal(err)
	}
	return b.Addr()
}
