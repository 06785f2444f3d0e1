package apps_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	goafc "github.com/danielpaulus/go-ios/ios/afc"
	"github.com/danielpaulus/go-ios/ios/house_arrest"
	"github.com/danielpaulus/go-ios/ios/installationproxy"
	"github.com/danielpaulus/go-ios/ios/zipconduit"

	"github.com/iosmux/iosmux/internal/ipa/ipatest"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/instproxy"
	"github.com/iosmux/iosmux/services/reach"
)

func writeIPA(t testing.TB, s ipatest.Spec) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), s.BundleID+".ipa")
	if err := ipatest.WriteFile(p, s); err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *rig) installed(t testing.TB, id string) (instproxy.App, bool) {
	t.Helper()
	c, err := instproxy.Open(testCtx(t), r.lockdownOpener(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Lookup(testCtx(t), []string{id}, instproxy.LookupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, ok := res[id]
	return a, ok
}

// TestIdeviceinstaller: Debian's ideviceinstaller installs (AFC staging,
// then installation_proxy, through usbmuxd with service TLS), lists and
// uninstalls; a broken package fails with the device's error.
func TestIdeviceinstaller(t *testing.T) {
	r := shared
	udid := r.dev.UDID()
	pkg := writeIPA(t, ipatest.Spec{BundleID: "com.example.limd", Name: "Limd", Version: "31", ShortVersion: "3.1", Bulk: 1 << 20})
	out, err := r.idevice(t, "ideviceinstaller", "-u", udid, "-i", pkg)
	if err != nil || !strings.Contains(out, "Install: Complete") {
		t.Fatalf("ideviceinstaller -i: %v\n%s", err, out)
	}
	for _, stage := range []string{"CreatingStagingDirectory", "ExtractingPackage", "InstallingApplication", "GeneratingApplicationMap"} {
		if !strings.Contains(out, stage) {
			t.Errorf("install output lacks %s:\n%s", stage, out)
		}
	}
	if a, ok := r.installed(t, "com.example.limd"); !ok || a.Version() != "31" {
		t.Errorf("after ideviceinstaller -i: %v, %v", a, ok)
	}
	out, err = r.idevice(t, "ideviceinstaller", "-u", udid, "-l")
	if err != nil || !strings.Contains(out, `com.example.limd, "31", "Limd"`) {
		t.Errorf("ideviceinstaller -l: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.ipa")
	os.WriteFile(bad, []byte("PK\x03\x04 but not really a zip"), 0o644)
	out, err = r.idevice(t, "ideviceinstaller", "-u", udid, "-i", bad)
	if err == nil || strings.Contains(out, "Install: Complete") {
		t.Errorf("a broken package installed: %v\n%s", err, out)
	}
	out, err = r.idevice(t, "ideviceinstaller", "-u", udid, "-U", "com.example.limd")
	if err != nil || !strings.Contains(out, "Uninstall: Complete") {
		t.Fatalf("ideviceinstaller -U: %v\n%s", err, out)
	}
	if _, ok := r.installed(t, "com.example.limd"); ok {
		t.Error("still installed after ideviceinstaller -U")
	}
	if out, _ := r.idevice(t, "ideviceinstaller", "-u", udid, "-l"); strings.Contains(out, "com.example.limd") {
		t.Errorf("ideviceinstaller -l after -U:\n%s", out)
	}
}

// TestGoIOS: go-ios v1.3.2 installs with the zip conduit (`ios install`),
// lists (`ios apps`), uninstalls (`ios uninstall`), and moves files with
// its AFC client (`ios fsync` push/pull), and house_arrest (`ios fsync
// --app`), all through usbmuxd.
func TestGoIOS(t *testing.T) {
	r := shared
	dev := r.goiosDevice(t)
	pkg := writeIPA(t, ipatest.Spec{BundleID: "com.example.goios", Name: "GoIOS", Version: "7", ShortVersion: "0.7", Developer: true, Bulk: 2 << 20})
	conn, err := zipconduit.New(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SendFile(pkg); err != nil {
		t.Fatalf("ios install: %v", err)
	}
	conn.Close()
	ip, err := installationproxy.New(dev)
	if err != nil {
		t.Fatal(err)
	}
	apps, err := ip.BrowseUserApps()
	ip.Close()
	var found bool
	for _, a := range apps {
		if a.CFBundleIdentifier() == "com.example.goios" && a.CFBundleShortVersionString() == "0.7" && strings.HasSuffix(a.Path(), "/GoIOS.app") {
			found = true
		}
	}
	if err != nil || !found {
		t.Fatalf("ios apps: %v, %v", apps, err)
	}

	// fsync push and pull, a folder.
	src := filepath.Join(t.TempDir(), "fs")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	data := make([]byte, 1<<20+3)
	io.ReadFull(testkit.Rand(3), data)
	os.WriteFile(filepath.Join(src, "d", "f.bin"), data, 0o644)
	ac, err := goafc.New(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.MkDir("/Downloads/goios"); err != nil {
		t.Fatal(err)
	}
	if err := ac.Push(filepath.Join(src, "d", "f.bin"), "/Downloads/goios/f.bin"); err != nil {
		t.Fatalf("ios fsync push: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(r.dev.Media(), "Downloads", "goios", "f.bin")); !bytes.Equal(b, data) {
		t.Error("the device holds something else than go-ios pushed")
	}
	dst := filepath.Join(t.TempDir(), "pulled")
	if err := ac.Pull("/Downloads/goios", dst); err != nil {
		t.Fatalf("ios fsync pull: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "f.bin")); !bytes.Equal(b, data) {
		t.Error("go-ios pulled something else")
	}
	if err := ac.RemoveAll("/Downloads/goios"); err != nil {
		t.Errorf("ios fsync rm --r: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.dev.Media(), "Downloads", "goios")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after rm: %v", err)
	}
	ac.Close()

	// fsync --app: the developer app's container.
	hc, err := house_arrest.New(dev, "com.example.goios")
	if err != nil {
		t.Fatalf("ios fsync --app: %v", err)
	}
	if err := hc.Push(filepath.Join(src, "d", "f.bin"), "/Documents/f.bin"); err != nil {
		t.Fatal(err)
	}
	entries, err := hc.List("/")
	if err != nil || !slices.Contains(entries, "Documents") || !slices.Contains(entries, "Library") {
		t.Errorf("container root %v, %v", entries, err)
	}
	hc.Close()

	ip, _ = installationproxy.New(dev)
	if err := ip.Uninstall("com.example.goios"); err != nil {
		t.Fatalf("ios uninstall: %v", err)
	}
	ip.Close()
	if _, ok := r.installed(t, "com.example.goios"); ok {
		t.Error("still installed after ios uninstall")
	}
}

// TestAppium: appium-ios-remotexpc's AFC and installation proxy services
// over RSD: files both ways, a package staged and installed, listed,
// uninstalled.
func TestAppium(t *testing.T) {
	r := shared
	dir := t.TempDir()
	data := make([]byte, 5<<20+11)
	io.ReadFull(testkit.Rand(5), data)
	local := filepath.Join(dir, "a.bin")
	os.WriteFile(local, data, 0o644)
	pkg := writeIPA(t, ipatest.Spec{BundleID: "com.example.appium", Name: "Appium", Version: "12", ShortVersion: "1.2"})
	res := r.appium(t,
		map[string]any{"op": "mkdir", "path": "/Downloads/appium"},
		map[string]any{"op": "push", "local": local, "remote": "/Downloads/appium/a.bin"},
		map[string]any{"op": "stat", "path": "/Downloads/appium/a.bin"},
		map[string]any{"op": "ls", "path": "/Downloads/appium"},
		map[string]any{"op": "pull", "remote": "/Downloads/appium", "local": filepath.Join(dir, "back")},
		map[string]any{"op": "push", "local": pkg, "remote": "/PublicStaging/app.ipa"},
		map[string]any{"op": "install", "remote": "/PublicStaging/app.ipa"},
		map[string]any{"op": "apps"},
		map[string]any{"op": "uninstall", "id": "com.example.appium"},
		map[string]any{"op": "apps"},
	)
	for i, s := range res {
		if !s.OK {
			t.Errorf("step %d %s: %s", i, s.Op, s.Error)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(r.dev.Media(), "Downloads", "appium", "a.bin")); !bytes.Equal(b, data) {
		t.Error("the device holds something else than appium pushed")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "back", "a.bin")); !bytes.Equal(b, data) {
		t.Error("appium pulled something else")
	}
	var st struct{ Type, Size string }
	json.Unmarshal(res[2].Result, &st)
	if st.Type != "S_IFREG" || st.Size != "5242891" {
		t.Errorf("appium stat = %+v", st)
	}
	var before, after [][]string
	json.Unmarshal(res[7].Result, &before)
	json.Unmarshal(res[9].Result, &after)
	if !slices.ContainsFunc(before, func(a []string) bool { return a[0] == "com.example.appium" && a[1] == "12" }) ||
		slices.ContainsFunc(after, func(a []string) bool { return a[0] == "com.example.appium" }) {
		t.Errorf("appium apps before uninstall %v, after %v", before, after)
	}
}

// TestCrossClient: a file pushed by one client is pulled byte-identical by
// every other: iosmux (over usbmuxd and over RSD), go-ios, appium.
func TestCrossClient(t *testing.T) {
	r := shared
	ctx := testCtx(t)
	dir := t.TempDir()
	data := make([]byte, 9<<20+5)
	io.ReadFull(testkit.Rand(9), data)
	local := filepath.Join(dir, "x.bin")
	os.WriteFile(local, data, 0o644)
	want := fileHash(t, local)

	ours := func(o reach.Opener) *afc.Client {
		conn, err := o.Open(ctx, reach.AFC)
		if err != nil {
			t.Fatal(err)
		}
		c := afc.NewClient(conn, nil)
		t.Cleanup(func() { c.Close() })
		return c
	}
	viaLockdown, viaRSD := ours(r.lockdownOpener(t)), ours(r.rsdOpener(t))
	goios, err := goafc.New(r.goiosDevice(t))
	if err != nil {
		t.Fatal(err)
	}
	defer goios.Close()
	pushers := map[string]func(remote string){
		"iosmux": func(remote string) {
			if _, err := viaLockdown.Push(ctx, local, remote, afc.TransferConfig{}); err != nil {
				t.Fatal(err)
			}
		},
		"go-ios": func(remote string) {
			if err := goios.Push(local, remote); err != nil {
				t.Fatal(err)
			}
		},
		"appium": func(remote string) {
			if s := r.appium(t, map[string]any{"op": "push", "local": local, "remote": remote}); !s[0].OK {
				t.Fatal(s[0].Error)
			}
		},
	}
	pullers := map[string]func(remote, local string){
		"iosmux over usbmuxd": func(remote, local string) {
			if _, err := viaLockdown.Pull(ctx, remote, local, afc.TransferConfig{}); err != nil {
				t.Fatal(err)
			}
		},
		"iosmux over RSD": func(remote, local string) {
			if _, err := viaRSD.Pull(ctx, remote, local, afc.TransferConfig{}); err != nil {
				t.Fatal(err)
			}
		},
		"go-ios": func(remote, local string) {
			if err := goios.Pull(remote, local); err != nil {
				t.Fatal(err)
			}
		},
		"appium": func(remote, local string) {
			if s := r.appium(t, map[string]any{"op": "pull", "remote": remote, "local": local}); !s[0].OK {
				t.Fatal(s[0].Error)
			}
		},
	}
	for pn, push := range pushers {
		remote := "/Downloads/cross-" + strings.ReplaceAll(pn, " ", "_") + ".bin"
		push(remote)
		for ln, pull := range pullers {
			out := filepath.Join(t.TempDir(), "got.bin")
			pull(remote, out)
			if got := fileHash(t, out); got != want {
				t.Errorf("pushed by %s, pulled by %s: the bytes differ", pn, ln)
			}
		}
	}
}

// TestPathEscape: every client's attempt to leave the AFC tree — "..",
// paths through links made with AFC's link operation to outside — fails
// with the device's error, and the folder beside the tree is unchanged.
func TestPathEscape(t *testing.T) {
	r := shared
	ctx := testCtx(t)
	before := hashTree(t, r.outside)
	defer func() {
		if hashTree(t, r.outside) != before {
			t.Error("the folder beside the AFC tree changed")
		}
	}()
	conn, err := r.lockdownOpener(t).Open(ctx, reach.AFC)
	if err != nil {
		t.Fatal(err)
	}
	ours := afc.NewClient(conn, nil)
	defer ours.Close()
	// Links to outside, made through AFC (a device stores any target).
	for name, target := range map[string]string{"/Downloads/up": "../../outside", "/Downloads/abs": r.outside, "/Downloads/root": "/"} {
		ours.Remove(ctx, name)
		if err := ours.Link(ctx, afc.Symlink, target, name); err != nil {
			t.Fatal(err)
		}
	}
	escapes := []string{"../outside/secret", "/../../outside/secret", "Downloads/../../outside/secret", "/Downloads/up/secret", "/Downloads/abs/secret", "/Downloads/root/etc/passwd"}
	for _, p := range escapes {
		if _, err := ours.Stat(ctx, p); !errors.Is(err, fs.ErrPermission) && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("iosmux stat %s: %v", p, err)
		}
		var out bytes.Buffer
		if _, err := ours.ReadFile(ctx, p, &out, nil); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("iosmux read %s: %v (%q)", p, err, out.String())
		}
		if _, err := ours.WriteFile(ctx, p, strings.NewReader("x"), nil); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("iosmux write %s: %v", p, err)
		}
		if err := ours.RemoveAll(ctx, p); !errors.Is(err, fs.ErrPermission) && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("iosmux remove-all %s: %v", p, err)
		}
	}
	// go-ios.
	g, err := goafc.New(r.goiosDevice(t))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, p := range escapes {
		if f, err := g.Open(p, goafc.READ_ONLY); err == nil {
			f.Close()
			t.Errorf("go-ios opened %s", p)
		} else if !strings.Contains(err.Error(), "afc error code: 10 (PermDenied)") {
			t.Errorf("go-ios open %s: %v", p, err)
		}
		if err := g.Push(filepath.Join(r.outside, "secret"), p+".new"); err == nil {
			t.Errorf("go-ios pushed to %s", p)
		}
		if err := g.RemoveAll(p); err == nil {
			t.Errorf("go-ios removed %s", p)
		}
	}
	// appium.
	var steps []map[string]any
	for _, p := range escapes {
		steps = append(steps, map[string]any{"op": "pull", "remote": p, "local": filepath.Join(t.TempDir(), "x")},
			map[string]any{"op": "push", "local": filepath.Join(r.outside, "secret"), "remote": p + ".new"})
	}
	for i, s := range r.appium(t, steps...) {
		if s.OK {
			t.Errorf("appium %s %v succeeded", s.Op, steps[i])
		}
	}
	for _, n := range []string{"/Downloads/up", "/Downloads/abs", "/Downloads/root"} {
		ours.Remove(ctx, n)
	}
}

// TestIOSMuxInstall: `iosmux apps install` of a 200 MiB package made here,
// then `apps list` shows it with its bundle id and version (through
// usbmuxd, and through an RSD with --rsd); `apps uninstall` removes it.
func TestIOSMuxInstall(t *testing.T) {
	r := shared
	udid := r.dev.UDID()
	pkg := writeIPA(t, ipatest.Spec{BundleID: "com.example.big", Name: "Big", Version: "2024.1", ShortVersion: "4.5.6", Bulk: 200 << 20})
	out, err := r.iosmux(t, "apps", "install", pkg, "--udid", udid, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil || res["bundleID"] != "com.example.big" || res["version"] != "2024.1" || res["shortVersion"] != "4.5.6" {
		t.Fatalf("install: %s, %v", out, err)
	}
	rsd := r.backendRSD(t)
	for _, where := range [][]string{{"--udid", udid}, {"--rsd", rsd.Addr().String(), itoa(int(rsd.Port()))}} {
		out, err = r.iosmux(t, append([]string{"apps", "list", "--json"}, where...)...)
		if err != nil {
			t.Fatal(err)
		}
		var apps []struct{ BundleID, Version, ShortVersion string }
		json.Unmarshal(out, &apps)
		if !slices.ContainsFunc(apps, func(a struct{ BundleID, Version, ShortVersion string }) bool {
			return a.BundleID == "com.example.big" && a.Version == "2024.1" && a.ShortVersion == "4.5.6"
		}) {
			t.Errorf("apps list %v: %s", where, out)
		}
	}
	if a, ok := r.installed(t, "com.example.big"); !ok || a["StaticDiskUsage"] == nil {
		t.Errorf("installed: %v", a)
	}
	if _, err := r.iosmux(t, "apps", "uninstall", "com.example.big", "--udid", udid); err != nil {
		t.Fatal(err)
	}
	out, _ = r.iosmux(t, "apps", "list", "--json", "--udid", udid)
	if bytes.Contains(out, []byte("com.example.big")) {
		t.Errorf("listed after uninstall: %s", out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
