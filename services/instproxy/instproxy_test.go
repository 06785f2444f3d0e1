package instproxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/ipa/ipatest"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/reach"
	"howett.net/plist"
)

func frame(t testing.TB, name string) lockdown.Message {
	t.Helper()
	m, _ := filepath.Glob("testdata/" + name + "_*.hex")
	if len(m) != 1 {
		t.Fatalf("vector %s: %v", name, m)
	}
	msg, err := lockdown.ParseMessage(testkit.ReadHex(t, filepath.Base(m[0]))[4:])
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// device is a simulated phone in small: a media folder served by AFC and
// installation_proxy over a registry.
type device struct {
	media string
	reg   *Registry
	srv   *Server
	afc   *afc.Server
	wg    sync.WaitGroup

	mu      sync.Mutex
	changes []string
}

func newDevice(t testing.TB, cfg ServerConfig) *device {
	t.Helper()
	base := t.TempDir()
	d := &device{media: filepath.Join(base, "Media")}
	os.MkdirAll(filepath.Join(d.media, "PublicStaging"), 0o755)
	var err error
	d.reg, err = NewRegistry(RegistryConfig{Dir: filepath.Join(base, "apps"), System: []SystemApp{{BundleID: "com.apple.mobilesafari", Name: "MobileSafari", Version: "8620", ShortVersion: "18.2"}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Registry, cfg.Media = d.reg, d.media
	cfg.OnChange = func(id string, in bool) {
		d.mu.Lock()
		d.changes = append(d.changes, map[bool]string{true: "+", false: "-"}[in]+id)
		d.mu.Unlock()
	}
	if d.srv, err = NewServer(cfg); err != nil {
		t.Fatal(err)
	}
	d.afc, _ = afc.NewServer(afc.ServerConfig{Root: d.media})
	t.Cleanup(d.wg.Wait)
	return d
}

func (d *device) UDID() string { return "00008120-0000000000000001" }
func (d *device) Open(ctx context.Context, s reach.Names) (net.Conn, error) {
	a, b := testkit.Pipe()
	switch s {
	case reach.InstallationProxy:
		d.wg.Go(func() { defer b.Close(); d.srv.Serve(context.Background(), b) })
	case reach.AFC:
		d.wg.Go(func() { defer b.Close(); d.afc.Serve(context.Background(), b) })
	default:
		return nil, &reach.NotListedError{Service: s.String()}
	}
	return a, nil
}

func (d *device) client(t testing.TB) *Client {
	conn, _ := d.Open(context.Background(), reach.InstallationProxy)
	c := NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return c
}

func (d *device) stage(t testing.TB, name string, s ipatest.Spec) string {
	t.Helper()
	if err := ipatest.WriteFile(filepath.Join(d.media, "PublicStaging", name), s); err != nil {
		t.Fatal(err)
	}
	return "PublicStaging/" + name
}

// TestVectors: Browse with lp09's options sends lp09's request; lp10 is
// read as InstallingApplication at 60 %.
func TestVectors(t *testing.T) {
	a, b := testkit.Pipe()
	defer a.Close()
	go NewClient(b).Browse(context.Background(), BrowseOptions{Type: TypeUser, Attributes: []string{"CFBundleIdentifier", "CFBundleName", "Path"}}, nil)
	got, err := lockdown.NewPlistConn(a, 0).ReceiveMessage(ctxT(t))
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := frame(t, "lp09"); !reflect.DeepEqual(got, want) {
		t.Errorf("Browse request %v\nwant lp09 %v", got, want)
	}
	p, done, err := ParseProgress("Install", frame(t, "lp10"))
	if err != nil || done || p.Percent != 60 || p.Status != "InstallingApplication" {
		t.Errorf("lp10 = %+v, %v, %v", p, done, err)
	}
}

// TestInstallBrowseUninstall: the whole life of an app on the device
// role, with the files on disk checked at each step.
func TestInstallBrowseUninstall(t *testing.T) {
	d := newDevice(t, ServerConfig{PageSize: 2})
	c := d.client(t)
	ctx := ctxT(t)
	// Three apps, so Browse needs pages.
	for i, id := range []string{"com.example.a", "com.example.b", "com.example.c"} {
		pkg := d.stage(t, id+".ipa", ipatest.Spec{BundleID: id, Name: "App" + string(rune('A'+i)), Version: "7", ShortVersion: "1.7", FileSharing: i == 0, Developer: i == 1})
		var seen []string
		err := c.Install(ctx, pkg, InstallOptions{BundleID: id}, func(p Progress) { seen = append(seen, p.Status) })
		if err != nil {
			t.Fatalf("Install %s: %v", id, err)
		}
		want := []string{"CreatingStagingDirectory", "ExtractingPackage", "InspectingPackage", "TakingInstallLock", "PreflightingApplication",
			"InstallingEmbeddedProfile", "VerifyingApplication", "CreatingContainer", "InstallingApplication", "PostflightingApplication",
			"SandboxingApplication", "GeneratingApplicationMap", "Complete"}
		if !slices.Equal(seen, want) {
			t.Errorf("progress %v\nwant %v", seen, want)
		}
	}
	var pages int
	apps, err := c.Browse(ctx, BrowseOptions{Type: TypeUser}, func([]App) { pages++ })
	if err != nil || len(apps) != 3 || pages != 2 {
		t.Fatalf("Browse = %d apps in %d pages, %v", len(apps), pages, err)
	}
	a := apps[0]
	if a.BundleID() != "com.example.a" || a.Version() != "7" || a.ShortVersion() != "1.7" || a.Name() != "AppA" || a.Type() != TypeUser ||
		!a.FileSharing() || !strings.HasPrefix(a.Path(), "/private/var/containers/Bundle/Application/") || !strings.HasSuffix(a.Path(), "/AppA.app") {
		t.Errorf("app = %v", a)
	}
	all, _ := c.Browse(ctx, BrowseOptions{}, nil)
	sys, _ := c.Browse(ctx, BrowseOptions{Type: TypeSystem, Attributes: []string{"CFBundleIdentifier"}}, nil)
	if len(all) != 4 || len(sys) != 1 || len(sys[0]) != 1 || sys[0].BundleID() != "com.apple.mobilesafari" {
		t.Errorf("Browse all = %d, system = %v", len(all), sys)
	}
	got, err := c.Lookup(ctx, []string{"com.example.b", "com.example.none"}, LookupOptions{Attributes: []string{"CFBundleIdentifier", "IsDeveloperApp"}})
	if err != nil || len(got) != 1 || got["com.example.b"]["IsDeveloperApp"] != true || len(got["com.example.b"]) != 2 {
		t.Errorf("Lookup = %v, %v", got, err)
	}
	// On disk: the bundle and a container.
	rec, _ := d.reg.Lookup("com.example.a")
	if b, err := os.ReadFile(filepath.Join(d.reg.BundleDir(rec), "AppA")); err != nil || !bytes.Contains(b, []byte("com.example.a")) {
		t.Errorf("bundle executable: %q, %v", b, err)
	}
	os.WriteFile(filepath.Join(d.reg.ContainerDir(rec), "Documents", "keep.txt"), []byte("data"), 0o644)
	// Upgrade keeps the data, replaces the bundle.
	pkg := d.stage(t, "a2.ipa", ipatest.Spec{BundleID: "com.example.a", Name: "AppA", Version: "8", ShortVersion: "1.8"})
	if err := c.Upgrade(ctx, pkg, InstallOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	rec2, _ := d.reg.Lookup("com.example.a")
	if rec2.Info["CFBundleVersion"] != "8" || rec2.DataUUID != rec.DataUUID || rec2.BundleUUID == rec.BundleUUID {
		t.Errorf("after upgrade: %+v", rec2)
	}
	if _, err := os.Stat(d.reg.BundleDir(rec)); !os.IsNotExist(err) {
		t.Errorf("the old bundle is still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(d.reg.ContainerDir(rec2), "Documents", "keep.txt")); string(b) != "data" {
		t.Error("the upgrade lost the app's data")
	}
	// The registry survives a restart.
	reg2, err := NewRegistry(RegistryConfig{Dir: filepath.Join(filepath.Dir(d.media), "apps")})
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := reg2.Lookup("com.example.a"); !ok || r.Info["CFBundleVersion"] != "8" {
		t.Errorf("after a restart: %+v, %v", r, ok)
	}
	// Uninstall removes bundle and data.
	var seen []string
	if err := c.Uninstall(ctx, "com.example.a", func(p Progress) { seen = append(seen, p.Status) }); err != nil {
		t.Fatal(err)
	}
	if seen[len(seen)-1] != StatusComplete {
		t.Errorf("uninstall progress %v", seen)
	}
	if _, ok := d.reg.Lookup("com.example.a"); ok {
		t.Error("still registered")
	}
	for _, p := range []string{d.reg.BundleDir(rec2), d.reg.ContainerDir(rec2)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	if err := c.Uninstall(ctx, "com.example.a", nil); err != nil {
		t.Errorf("uninstalling again: %v", err)
	}
	if err := c.Uninstall(ctx, "com.apple.mobilesafari", nil); !errors.Is(err, ErrUninstallProhibited) {
		t.Errorf("uninstalling a system app: %v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if want := []string{"+com.example.a", "+com.example.b", "+com.example.c", "+com.example.a", "-com.example.a"}; !slices.Equal(d.changes, want) {
		t.Errorf("changes %v, want %v", d.changes, want)
	}
}

// TestInstallErrors: broken packages and bad requests get the device's
// error names, and the connection goes on.
func TestInstallErrors(t *testing.T) {
	d := newDevice(t, ServerConfig{})
	c := d.client(t)
	ctx := ctxT(t)
	os.WriteFile(filepath.Join(d.media, "PublicStaging", "garbage.ipa"), []byte("not a zip"), 0o644)
	var nopayload bytes.Buffer
	ipatest.Build(&nopayload, ipatest.Spec{BundleID: "x"})
	os.WriteFile(filepath.Join(d.media, "PublicStaging", "truncated.ipa"), nopayload.Bytes()[:nopayload.Len()/2], 0o644)
	os.MkdirAll(filepath.Join(d.media, "PublicStaging", "emptydir"), 0o755)
	outside := filepath.Join(filepath.Dir(d.media), "outside.ipa")
	ipatest.WriteFile(outside, ipatest.Spec{BundleID: "com.example.outside"})
	for _, tc := range []struct {
		path string
		want error
	}{
		{"", ErrMissingPackagePath},
		{"PublicStaging/missing.ipa", ErrMissingPackagePath},
		{"../outside.ipa", ErrMissingPackagePath},
		{"PublicStaging/garbage.ipa", ErrPackageInspectionFailed},
		{"PublicStaging/truncated.ipa", ErrPackageInspectionFailed},
		{"PublicStaging/emptydir", ErrPackageInspectionFailed},
	} {
		err := c.Install(ctx, tc.path, InstallOptions{}, nil)
		var de *DeviceError
		if !errors.Is(err, tc.want) || !errors.As(err, &de) || de.Description == "" {
			t.Errorf("Install %q: %v, want %v", tc.path, err, tc.want)
		}
	}
	if apps, _ := c.Browse(ctx, BrowseOptions{Type: TypeUser}, nil); len(apps) != 0 {
		t.Errorf("failed installs left apps: %v", apps)
	}
	if ents, _ := os.ReadDir(filepath.Join(filepath.Dir(d.media), "apps", "staging")); len(ents) != 0 {
		t.Errorf("failed installs left staging folders: %v", ents)
	}
	if err := c.Uninstall(ctx, "", nil); !errors.Is(err, ErrMissingApplicationIdentifier) {
		t.Errorf("Uninstall without an id: %v", err)
	}
	if err := c.progressCommand(ctx, map[string]any{"Command": "Frobnicate"}, nil); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("unknown command: %v", err)
	}
	if err := c.progressCommand(ctx, map[string]any{"Foo": 1}, nil); !errors.Is(err, ErrMissingCommand) {
		t.Errorf("no command: %v", err)
	}
	if ok, err := c.CheckCapabilitiesMatch(ctx, []string{"arm64"}); err != nil || !ok {
		t.Errorf("CheckCapabilitiesMatch = %v, %v", ok, err)
	}
}

// TestInstallDir: a .app folder staged through AFC (idevice, and
// ideviceinstaller for folders) installs as a developer app.
func TestInstallDir(t *testing.T) {
	d := newDevice(t, ServerConfig{})
	ctx := ctxT(t)
	var pkg bytes.Buffer
	ipatest.Build(&pkg, ipatest.Spec{BundleID: "com.example.dir", Name: "Dir", Developer: true})
	stage, _ := os.MkdirTemp(t.TempDir(), "x")
	root, _ := os.OpenRoot(stage)
	// Unpack the package by hand into PublicStaging/Dir.app.
	reg, _ := NewRegistry(RegistryConfig{Dir: filepath.Join(stage, "tmp")})
	if _, err := reg.InstallFile(ctx, bytes.NewReader(pkg.Bytes()), int64(pkg.Len()), nil); err != nil {
		t.Fatal(err)
	}
	root.Close()
	rec, _ := reg.Lookup("com.example.dir")
	if err := os.Rename(reg.BundleDir(rec), filepath.Join(d.media, "PublicStaging", "Dir.app")); err != nil {
		t.Fatal(err)
	}
	c := d.client(t)
	if err := c.Install(ctx, "/PublicStaging/Dir.app", InstallOptions{PackageType: PackageDeveloper}, nil); err != nil {
		t.Fatal(err)
	}
	if r, ok := d.reg.Lookup("com.example.dir"); !ok || !r.Developer || r.AppDir != "Dir.app" {
		t.Errorf("installed %+v, %v", r, ok)
	}
}

// TestInstallLocal: the host flow end to end: stage a local .ipa (and a
// .app folder) through the AFC client, install, clean up.
func TestInstallLocal(t *testing.T) {
	d := newDevice(t, ServerConfig{})
	ctx := ctxT(t)
	conn, _ := d.Open(ctx, reach.AFC)
	stager := afc.NewClient(conn, nil)
	defer stager.Close()
	local := filepath.Join(t.TempDir(), "demo.ipa")
	ipatest.WriteFile(local, ipatest.Spec{BundleID: "com.example.local", Version: "3", ShortVersion: "3.0", Bulk: 3 << 20})
	var steps []Step
	var uploaded int64
	got, err := InstallLocal(ctx, d, stager, local, InstallOptions{}, func(p InstallProgress) {
		if len(steps) == 0 || steps[len(steps)-1] != p.Step {
			steps = append(steps, p.Step)
		}
		if p.Step == StepUpload {
			uploaded = p.Bytes
		}
	})
	fi, _ := os.Stat(local)
	if err != nil || got.BundleID != "com.example.local" || got.Version != "3" || uploaded != fi.Size() || !slices.Equal(steps, []Step{StepUpload, StepInstall, StepDone}) {
		t.Fatalf("InstallLocal = %+v, %v (steps %v, uploaded %d)", got, err, steps, uploaded)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.media, "PublicStaging")); len(ents) != 0 {
		t.Errorf("staged copy left: %v", ents)
	}
	// A .app folder is packed on the fly.
	rec, _ := d.reg.Lookup("com.example.local")
	appCopy := filepath.Join(t.TempDir(), "Copy.app")
	os.CopyFS(appCopy, os.DirFS(d.reg.BundleDir(rec)))
	if err := Uninstall(ctx, d, "com.example.local", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := InstallLocal(ctx, d, stager, appCopy, InstallOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	if r, ok := d.reg.Lookup("com.example.local"); !ok || r.AppDir != "Copy.app" {
		t.Errorf("installed from a folder: %+v, %v", r, ok)
	}
	// A broken package fails before anything is uploaded.
	bad := filepath.Join(t.TempDir(), "bad.ipa")
	os.WriteFile(bad, []byte("nope"), 0o644)
	if _, err := InstallLocal(ctx, d, stager, bad, InstallOptions{}, nil); err == nil {
		t.Error("installing a broken package succeeded")
	}
}

// FuzzParseProgress: any plist as a progress reply: no panic; a reply is
// exactly one of done, progress, or an error.
func FuzzParseProgress(f *testing.F) {
	for _, m := range []map[string]any{
		{"PercentComplete": 60, "Status": "InstallingApplication"},
		{"Status": "Complete"},
		{"Error": "PackageInspectionFailed", "ErrorDescription": "x", "ErrorDetail": 3},
		{"ErrorDescription": "only a description"},
		{"Status": "BrowsingApplications", "CurrentList": []any{map[string]any{"CFBundleIdentifier": "a"}}},
	} {
		b, _ := plist.Marshal(m, plist.XMLFormat)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := lockdown.ParseMessage(b)
		if err != nil {
			return
		}
		p, done, err := ParseProgress("Install", m)
		if err != nil && (done || p.Status != "") {
			t.Fatalf("error with a result: %+v %v %v", p, done, err)
		}
		if p.Percent > 100 {
			t.Fatalf("percent %d", p.Percent)
		}
	})
}
