package sim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/internal/ipa/ipatest"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/housearrest"
	"github.com/iosmux/iosmux/services/instproxy"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/services/zipconduit"
)

func openAFC(t *testing.T, ctx context.Context, o reach.Opener) *afc.Client {
	t.Helper()
	conn, err := o.Open(ctx, reach.AFC)
	if err != nil {
		t.Fatalf("%T: AFC: %v", o, err)
	}
	c := afc.NewClient(conn, nil)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestAppsAndFiles: files and apps through both paths, usbmuxd lockdown
// (with service TLS, as go-ios and libimobiledevice) and a tunnel's RSD (as
// pymobiledevice3 and appium): a file pushed one way is pulled the other,
// an app installed through installation_proxy and one through the zip
// conduit are listed both ways, house_arrest vends a container, and all of
// it survives a restart; uninstall removes it.
func TestAppsAndFiles(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	state := t.TempDir()
	d := r.device(t, Config{Profile: MustProfile("18.2"), StateDir: state})
	ctx := testCtx(t)
	if _, err := r.pairLockdown(t, d); err != nil {
		t.Fatal(err)
	}
	lo, err := reach.NewLockdown(ctx, r.client, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	ro := r.rsdOpener(t, ctx, d)
	for _, s := range []reach.Names{reach.AFC, reach.HouseArrest, reach.InstallationProxy, reach.ZipConduit} {
		if _, err := ro.Lookup(s); err != nil {
			t.Errorf("the trusted RSD does not list %s: %v", s.RSD, err)
		}
	}

	// A file pushed through lockdown is pulled byte-identical through RSD.
	la, ra := openAFC(t, ctx, lo), openAFC(t, ctx, ro)
	names, err := ra.ReadDir(ctx, "/")
	for _, want := range []string{"DCIM", "Downloads", "Books", "PublicStaging"} {
		if !slices.Contains(names, want) {
			t.Errorf("root listing %v lacks %s (%v)", names, want, err)
		}
	}
	data := make([]byte, 3<<20+17)
	io.ReadFull(testkit.Rand(7), data)
	if _, err := la.WriteFile(ctx, "Downloads/x.bin", bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := ra.ReadFile(ctx, "/Downloads/x.bin", &got, nil); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("pulled %d bytes through RSD, %v", got.Len(), err)
	}
	if b, _ := os.ReadFile(filepath.Join(d.Media(), "Downloads", "x.bin")); !bytes.Equal(b, data) {
		t.Error("the device's tree does not hold the pushed file")
	}
	if _, err := ra.Stat(ctx, "../../.."); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("climbing out of the media folder: %v", err)
	}

	// Install through installation_proxy (staged by AFC) over lockdown, and
	// through the zip conduit over RSD.
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one.ipa"), filepath.Join(dir, "two.ipa")
	ipatest.WriteFile(one, ipatest.Spec{BundleID: "com.example.one", Version: "11", ShortVersion: "1.1", Developer: true})
	ipatest.WriteFile(two, ipatest.Spec{BundleID: "com.example.two", Version: "22", ShortVersion: "2.2", FileSharing: true})
	if _, err := instproxy.InstallLocal(ctx, lo, la, one, instproxy.InstallOptions{}, nil); err != nil {
		t.Fatalf("install through lockdown: %v", err)
	}
	if _, err := zipconduit.Install(ctx, ro, two, zipconduit.SendConfig{}); err != nil {
		t.Fatalf("install through the zip conduit over RSD: %v", err)
	}
	for _, o := range []reach.Opener{lo, ro} {
		c, err := instproxy.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		apps, err := c.Browse(ctx, instproxy.BrowseOptions{Type: instproxy.TypeUser}, nil)
		c.Close()
		var ids []string
		for _, a := range apps {
			ids = append(ids, a.BundleID()+"@"+a.Version())
		}
		if err != nil || !slices.Equal(ids, []string{"com.example.one@11", "com.example.two@22"}) {
			t.Errorf("%T: Browse = %v, %v", o, ids, err)
		}
	}

	// house_arrest: the developer app's container; the other one shares
	// only Documents.
	conn, err := housearrest.Open(ctx, lo, "com.example.one", false)
	if err != nil {
		t.Fatal(err)
	}
	hc := afc.NewClient(conn, nil)
	if _, err := hc.WriteFile(ctx, "Documents/notes.txt", strings.NewReader("hello"), nil); err != nil {
		t.Fatal(err)
	}
	hc.Close()
	if _, err := housearrest.Open(ctx, ro, "com.example.two", false); !errors.Is(err, housearrest.ErrNotVendable) {
		t.Errorf("VendContainer of an App Store-like app: %v", err)
	}
	conn, cmd, err := housearrest.OpenAuto(ctx, ro, "com.example.two")
	if err != nil || cmd != housearrest.VendDocuments {
		t.Fatalf("OpenAuto = %v, %v", cmd, err)
	}
	conn.Close()

	// A restart keeps files and apps.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = r.device(t, Config{Profile: MustProfile("18.2"), StateDir: state})
	lo, err = reach.NewLockdown(ctx, r.client, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := d.Apps().Lookup("com.example.one")
	if !ok {
		t.Fatal("the app was lost across a restart")
	}
	if b, _ := os.ReadFile(filepath.Join(d.Apps().ContainerDir(rec), "Documents", "notes.txt")); string(b) != "hello" {
		t.Errorf("the container's file after a restart: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(d.Media(), "Downloads", "x.bin")); !bytes.Equal(b, data) {
		t.Error("the pushed file was lost across a restart")
	}
	if err := instproxy.Uninstall(ctx, lo, "com.example.one", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Apps().Lookup("com.example.one"); ok {
		t.Error("still installed after uninstall")
	}
	if _, err := os.Stat(d.Apps().ContainerDir(rec)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the container is left after uninstall: %v", err)
	}
}

// TestFilesWithoutState: a device without a state directory keeps its
// tree in a temporary folder, gone after Close.
func TestFilesWithoutState(t *testing.T) {
	r := newRig(t)
	d := r.device(t, Config{})
	media := d.Media()
	if _, err := os.Stat(filepath.Join(media, "PublicStaging")); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := os.Stat(media); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary tree is left after Close: %v", err)
	}
}
