package ddi_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ios "github.com/danielpaulus/go-ios/ios"
	goamfi "github.com/danielpaulus/go-ios/ios/amfi"
	"github.com/danielpaulus/go-ios/ios/imagemounter"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunneld"
	"github.com/iosmux/iosmux/usbmux"
)

func goiosEntry(t testing.TB, udid string) ios.DeviceEntry {
	t.Helper()
	list, err := ios.ListDevices()
	if err != nil {
		t.Fatalf("go-ios list: %v", err)
	}
	for _, e := range list.DeviceList {
		if usbmux.SameUDID(e.Properties.SerialNumber, udid) {
			return e
		}
	}
	t.Fatalf("go-ios does not list %s", udid)
	return ios.DeviceEntry{}
}

// TestDDIAcceptance is issue 15's acceptance, in order on one simulated
// iPhone (a second one of a model the DDI lacks):
//
//  1. go-ios: Developer Mode off; `ios devmode enable` (arm, the device
//     reboots, accept after the reboot); on.
//  2. `iosmux mounter auto-mount` through usbmuxd: a DDI whose manifest
//     yields no EPRO/ESEC is refused by the TSS stand-in with status 94
//     and Apple's message.
//  3. `iosmux mounter auto-mount --tunnel UDID` through the backend tunneld
//     advertises: never mounted → TSS branch, mounted; then `iosmux rsd-info` on the device's own RSD, the
//     RSD of pymobiledevice3's listing (the backend), appium's
//     refresh-services and the backend's Handshake all list the DDI
//     service, nothing restarted; `ideviceimagemounter -l` lists the image.
//  4. reboot; iosmux through a tunnel of its own → offline branch, no TSS
//     request.
//  5. go-ios `ios image auto --basedir` (library calls) mounts through
//     usbmuxd from the device's kept manifest; libimobiledevice lists it.
//  6. appium's mounter over RSD mounts with a pre-seeded manifest.
//  7. the other model: `iosmux mounter auto-mount` names the identity the
//     DDI lacks.
func TestDDIAcceptance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	iosmux := buildIOSMux(t)
	state := t.TempDir()
	f := startFleet(t, sim.FleetConfig{Count: 2, Profile: sim.MustProfile("18.2"), StateDir: t.TempDir(), RebootDown: 500 * time.Millisecond})
	dev, other := f.Devices()[0], f.Devices()[1]
	mux := muxClient(f)
	for _, d := range []*sim.Device{dev, other} {
		if _, err := lockdown.PairUsbmux(ctx, mux, usbDevice(t, ctx, mux, d), lockdown.PairOptions{HostName: "ddi-interop"}); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("USBMUXD_SOCKET_ADDRESS", "unix://"+f.UsbmuxSocket())
	vec := vectorDDI()
	image := filepath.Join(vec, "Image.dmg")
	imageHex := hex.EncodeToString(digestOf(t, image))
	stdio := reach.OpenStdioSocket.RSD

	t.Run("go-ios devmode", func(t *testing.T) {
		entry := goiosEntry(t, dev.UDID())
		if on, err := imagemounter.IsDevModeEnabled(entry); err != nil || on {
			t.Fatalf("ios devmode get = %v, %v; want off", on, err)
		}
		boots := dev.Stats().Boots
		if err := goamfi.EnableDeveloperMode(entry, true); err != nil {
			t.Fatalf("ios devmode enable --enable-post-restart: %v", err)
		}
		if !dev.DeveloperMode() || dev.Stats().Boots != boots+1 {
			t.Errorf("after go-ios enable: on %v, boots %d → %d", dev.DeveloperMode(), boots, dev.Stats().Boots)
		}
		if on, err := imagemounter.IsDevModeEnabled(goiosEntry(t, dev.UDID())); err != nil || !on {
			t.Errorf("ios devmode get = %v, %v; want on", on, err)
		}
	})
	if !dev.DeveloperMode() {
		t.Fatal("Developer Mode is off; the mounts need it")
	}

	tssClient := &tss.Client{URL: f.TSSURL()}
	// The iosmux command, pointed at the fleet's usbmuxd and stand-in.
	cli := func(args ...string) (string, string, error) {
		cmd := exec.CommandContext(ctx, iosmux, args...)
		cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS=UNIX:"+f.UsbmuxSocket(), "IOSMUX_TSS_URL="+f.TSSURL(),
			"IOSMUX_STATE_DIR="+state, "XDG_CACHE_HOME="+state)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	t.Run("TSS refusal", func(t *testing.T) {
		_, stderr, err := cli("mounter", "auto-mount", "--udid", dev.UDID(), "--ddi", copyDDI(t, t.TempDir(), withoutRules, nil))
		if err == nil || !strings.Contains(stderr, "STATUS=94: This device isn't eligible for the requested build.") {
			t.Fatalf("iosmux mounter auto-mount with a rule-less manifest: %v\n%s", err, stderr)
		}
		if _, ok := dev.MountedDDI(); ok || f.TSS().Requests() != 1 {
			t.Errorf("after the refusal: mounted %v, %d TSS requests", ok, f.TSS().Requests())
		}
	})

	dm := startTunneld(t, f)
	t.Run("TSS branch and every service list", func(t *testing.T) {
		dm.pmd3RSD(t, ctx, dev.UDID()) // listed
		before := f.TSS().Requests()
		out, stderr, err := cli("mounter", "auto-mount", "--tunnel", dev.UDID(), "--tunneld", dm.d.Addr(tunneld.APIPMD3), "--ddi", vec, "--json")
		if err != nil {
			t.Fatalf("iosmux mounter auto-mount --tunnel: %v\n%s", err, stderr)
		}
		var res mounter.MountResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("auto-mount --json: %v\n%s", err, out)
		}
		if res.Manifest != mounter.FromTSS || f.TSS().Requests() != before+1 || res.Bytes != 960 || !slices.Contains(res.Services, stdio) {
			t.Errorf("auto-mount %+v, TSS requests %d → %d", res, before, f.TSS().Requests())
		}
		t.Logf("iosmux mounter auto-mount, TSS branch, through tunneld's backend: %v", time.Duration(res.Took))

		// iosmux rsd-info on the device's own RSD (its own tunnel).
		ns, devRSD := hostTunnel(t, ctx, mux, dev)
		host, port := fmtAddr(loopbackRSD(t, devRSD, ns.DialContext))
		out, stderr, err = cli("rsd-info", "--rsd", host, port, "--json")
		if err != nil {
			t.Fatalf("iosmux rsd-info: %v\n%s", err, stderr)
		}
		var info struct {
			Services map[string]json.RawMessage `json:"Services"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("rsd-info --json: %v\n%s", err, out)
		}
		if _, ok := info.Services[stdio]; !ok {
			t.Errorf("iosmux rsd-info lacks %s", stdio)
		}
		// The RSD pymobiledevice3's listing names (the backend): a fresh
		// Handshake, read by appium's RSD client too (in the mounter run
		// below) and ours here.
		nc, err := (&netDialer).DialContext(ctx, "tcp", dm.pmd3RSD(t, ctx, dev.UDID()).String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := rsd.NewClient(ctx, nc, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Handshake.Service(stdio); !ok {
			t.Errorf("the RSD of pymobiledevice3's listing lacks %s", stdio)
		}
		c.Close()
		// appium's refresh-services.
		var names []string
		if err := json.Unmarshal(node(t, ctx, "appium_refresh.mjs", portOf(dm.d.Addr("appium")), dev.UDID()), &names); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(names, stdio) {
			t.Errorf("appium refresh-services lists %v", names)
		}
		// The backend's own view.
		if h := dm.backend(dev.UDID()).Handshake(); h == nil {
			t.Error("backend serves no Handshake")
		} else if _, ok := h.Service(stdio); !ok {
			t.Errorf("the backend's Handshake lacks %s", stdio)
		}
		listsImage(t, ctx, f, dev.UDID(), imageHex)
	})

	t.Run("offline branch after a reboot", func(t *testing.T) {
		if err := dev.Reboot(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		ns, devRSD := hostTunnel(t, ctx, mux, dev)
		o, err := reach.NewRSD(ctx, ns.DialContext, devRSD, reach.RSDConfig{})
		if err != nil {
			t.Fatal(err)
		}
		before := f.TSS().Requests()
		res, err := mounter.AutoMount(ctx, o, mounter.Source{Dir: vec}, mounter.MountConfig{TSS: tssClient})
		if err != nil {
			t.Fatal(err)
		}
		if res.Manifest != mounter.FromDevice || f.TSS().Requests() != before {
			t.Errorf("second run %+v; TSS requests %d → %d (want none)", res, before, f.TSS().Requests())
		}
		t.Logf("auto-mount, offline branch, own tunnel: %v", res.Took)
		if err := mounter.Unmount(ctx, o); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("go-ios image auto", func(t *testing.T) {
		base := t.TempDir()
		copyDDI(t, filepath.Join(base, "ddi-interop"), nil, nil)
		entry := goiosEntry(t, dev.UDID())
		path, err := imagemounter.DownloadImageFor(entry, base)
		if err != nil {
			t.Fatalf("go-ios DownloadImageFor (basedir): %v", err)
		}
		if err := imagemounter.MountImage(entry, path); err != nil {
			t.Fatalf("go-ios MountImage: %v", err)
		}
		if got, ok := dev.MountedDDI(); !ok || hex.EncodeToString(got) != imageHex {
			t.Fatalf("after go-ios: mounted %x, %v", got, ok)
		}
		listsImage(t, ctx, f, dev.UDID(), imageHex)
		lo, _ := reach.NewLockdown(ctx, mux, dev.UDID())
		if err := mounter.Unmount(ctx, lo); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("appium mount with a pre-seeded manifest", func(t *testing.T) {
		// Forget the kept manifest (a new nonce), then seed one.
		lo, _ := reach.NewLockdown(ctx, mux, dev.UDID())
		c, err := mounter.Open(ctx, lo)
		if err != nil {
			t.Fatal(err)
		}
		c.RollNonce(ctx)
		c.Close()
		if err := dev.SeedManifest(vec); err != nil {
			t.Fatal(err)
		}
		before := f.TSS().Requests()
		host, port := fmtAddr(dm.pmd3RSD(t, ctx, dev.UDID()))
		var got struct {
			Before, After []string
			DevMode       bool
			MountPaths    []string
		}
		if err := json.Unmarshal(node(t, ctx, "appium_mounter.mjs", dev.UDID(), host, port, vec), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Before) != 0 || !got.DevMode || !slices.Equal(got.After, []string{imageHex}) || !slices.Equal(got.MountPaths, []string{mounter.MountPath}) {
			t.Errorf("appium: %+v", got)
		}
		if f.TSS().Requests() != before {
			t.Error("appium's mount reached the TSS stand-in")
		}
	})

	t.Run("missing build identity", func(t *testing.T) {
		if err := other.SetDeveloperMode(true); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := cli("mounter", "auto-mount", "--udid", other.UDID(), "--ddi", vec)
		id := other.Identity()
		want := fmt.Sprintf("no build identity for this device (BoardId 0x%X, ChipID 0x%X)", id.BoardID, id.ChipID)
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("a DDI without the device's identity: %v\n%s", err, stderr)
		}
	})
}

// listsImage: libimobiledevice's ideviceimagemounter -l (Personalized
// images) shows the image's signature.
func listsImage(t *testing.T, ctx context.Context, f *sim.Fleet, udid, imageHex string) {
	t.Helper()
	raw, _ := hex.DecodeString(imageHex)
	out, err := idevice(t, ctx, f, "ideviceimagemounter", "-u", udid, "-l", "-t", "Personalized", "-x")
	if err != nil {
		t.Fatalf("ideviceimagemounter -l: %v\n%s", err, out)
	}
	// The XML output wraps data in lines; compare without white space.
	flat := strings.Join(strings.Fields(out), "")
	if !strings.Contains(flat, base64.StdEncoding.EncodeToString(raw)) {
		t.Errorf("ideviceimagemounter -l does not list the mounted image:\n%s", out)
	}
}
