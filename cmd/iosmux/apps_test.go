package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/ipa/ipatest"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/usbmux"
)

// appsRig is one simulated iPhone behind the simulated usbmuxd, paired.
type appsRig struct {
	dev *sim.Device
	env map[string]string
}

func newAppsRig(t *testing.T) *appsRig {
	t.Helper()
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := mux.ListDevices(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("usbmuxd lists %v, %v", list, err)
	}
	if _, err := lockdown.PairUsbmux(ctx, mux, list[0], lockdown.PairOptions{HostName: "cli-test"}); err != nil {
		t.Fatal(err)
	}
	return &appsRig{dev: f.Devices()[0], env: map[string]string{"USBMUXD_SOCKET_ADDRESS": "UNIX:" + f.UsbmuxSocket(), "IOSMUX_STATE_DIR": t.TempDir()}}
}

// run runs a command line, decoding --json output into v when set.
func (r *appsRig) run(t *testing.T, v any, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := execIn(ctx, &out, &errb, r.env, args...)
	if err != nil {
		t.Logf("iosmux %v: %v\n%s%s", args, err, out.String(), errb.String())
	}
	if err == nil && v != nil {
		if jerr := json.Unmarshal(out.Bytes(), v); jerr != nil {
			t.Fatalf("iosmux %v: %v\n%s", args, jerr, out.String())
		}
	}
	return out.String(), err
}

func (r *appsRig) must(t *testing.T, v any, args ...string) string {
	t.Helper()
	out, err := r.run(t, v, args...)
	if err != nil {
		t.Fatalf("iosmux %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// TestAppsCommands: install by both paths, list, info, uninstall.
func TestAppsCommands(t *testing.T) {
	r := newAppsRig(t)
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one.ipa"), filepath.Join(dir, "two.ipa")
	ipatest.WriteFile(one, ipatest.Spec{BundleID: "com.example.one", Name: "One", Version: "101", ShortVersion: "1.0.1", Developer: true})
	ipatest.WriteFile(two, ipatest.Spec{BundleID: "com.example.two", Name: "Two", Version: "2", ShortVersion: "2.0"})

	var apps []appView
	r.must(t, &apps, "apps", "list", "--json")
	if len(apps) != 0 {
		t.Errorf("a new device lists %v", apps)
	}
	var res map[string]any
	r.must(t, &res, "apps", "install", one, "--json")
	if res["bundleID"] != "com.example.one" || res["version"] != "101" || res["via"] != defaultVia {
		t.Errorf("install = %v", res)
	}
	r.must(t, &res, "apps", "install", two, "--via", "instproxy", "--json")
	if res["bundleID"] != "com.example.two" || res["via"] != "instproxy" {
		t.Errorf("install --via instproxy = %v", res)
	}
	r.must(t, &apps, "apps", "list", "--json")
	if len(apps) != 2 || apps[0].BundleID != "com.example.one" || apps[0].ShortVersion != "1.0.1" || apps[0].Version != "101" || apps[1].Name != "Two" {
		t.Errorf("list = %+v", apps)
	}
	out := r.must(t, nil, "apps", "list")
	if !strings.Contains(out, "com.example.one") || !strings.Contains(out, "1.0.1 (101)") {
		t.Errorf("list text:\n%s", out)
	}
	var sys []map[string]any
	r.must(t, &sys, "apps", "list", "--type", "system", "--attrs", "CFBundleIdentifier", "--json")
	if len(sys) == 0 || len(sys[0]) != 1 || sys[0]["CFBundleIdentifier"] == nil {
		t.Errorf("system apps with one attribute: %v", sys)
	}
	var info map[string]any
	r.must(t, &info, "apps", "info", "com.example.one", "--json")
	if info["CFBundleIdentifier"] != "com.example.one" || !strings.HasSuffix(info["Path"].(string), "/One.app") {
		t.Errorf("info = %v", info)
	}
	if _, err := r.run(t, nil, "apps", "info", "com.example.none"); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("info of a missing app: %v", err)
	}
	bad := filepath.Join(dir, "bad.ipa")
	os.WriteFile(bad, []byte("not a zip"), 0o644)
	if _, err := r.run(t, nil, "apps", "install", bad); err == nil {
		t.Error("installing a broken package succeeded")
	}
	r.must(t, &res, "apps", "uninstall", "com.example.one", "--json")
	r.must(t, &apps, "apps", "list", "--json")
	if len(apps) != 1 || apps[0].BundleID != "com.example.two" {
		t.Errorf("after uninstall: %+v", apps)
	}
	if _, err := r.run(t, nil, "apps", "info"); !isUsage(err) {
		t.Errorf("info without a bundle id: %v", err)
	}
}

// TestAFCCommands: every afc subcommand against the device's tree, and
// --app through house_arrest.
func TestAFCCommands(t *testing.T) {
	r := newAppsRig(t)
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o644)
	os.WriteFile(filepath.Join(src, "sub", "b.bin"), bytes.Repeat([]byte{7}, 1<<20), 0o644)

	var pushed map[string]any
	r.must(t, &pushed, "afc", "push", src, "/Downloads", "--json")
	if pushed["files"] != 2.0 || pushed["bytes"] != float64(5+1<<20) {
		t.Errorf("push = %v", pushed)
	}
	if b, _ := os.ReadFile(filepath.Join(r.dev.Media(), "Downloads", "tree", "sub", "b.bin")); len(b) != 1<<20 {
		t.Errorf("the device holds %d bytes of b.bin", len(b))
	}
	var entries []fileView
	r.must(t, &entries, "afc", "ls", "/Downloads/tree", "--json")
	if len(entries) != 2 || entries[0].Path != "/Downloads/tree/a.txt" || entries[0].Size != 5 || entries[1].Type != "S_IFDIR" {
		t.Errorf("ls = %+v", entries)
	}
	if out := r.must(t, nil, "afc", "ls", "/"); !strings.Contains(out, "DCIM\n") {
		t.Errorf("ls / = %q", out)
	}
	var st fileView
	r.must(t, &st, "afc", "stat", "Downloads/tree/sub/b.bin", "--json")
	if st.Size != 1<<20 || st.Type != "S_IFREG" {
		t.Errorf("stat = %+v", st)
	}
	dst := t.TempDir()
	r.must(t, nil, "afc", "pull", "/Downloads/tree", dst)
	if b, _ := os.ReadFile(filepath.Join(dst, "tree", "a.txt")); string(b) != "alpha" {
		t.Errorf("pulled a.txt = %q", b)
	}
	r.must(t, nil, "afc", "mkdir", "/Downloads/x/y")
	r.must(t, nil, "afc", "mv", "/Downloads/tree/a.txt", "/Downloads/x")
	if _, err := os.Stat(filepath.Join(r.dev.Media(), "Downloads", "x", "a.txt")); err != nil {
		t.Errorf("mv into a folder: %v", err)
	}
	if _, err := r.run(t, nil, "afc", "rm", "/Downloads/tree"); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("rm of a full folder: %v", err)
	}
	r.must(t, nil, "afc", "rm", "-r", "/Downloads/tree", "/Downloads/x")
	var left []string
	ents, _ := os.ReadDir(filepath.Join(r.dev.Media(), "Downloads"))
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if len(left) != 0 {
		t.Errorf("Downloads holds %v after rm -r", left)
	}
	if _, err := r.run(t, nil, "afc", "stat", "/../etc"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("stat outside the tree: %v", err)
	}

	// --app: a developer app's container; Documents only for one that
	// shares files.
	ipa := filepath.Join(t.TempDir(), "d.ipa")
	ipatest.WriteFile(ipa, ipatest.Spec{BundleID: "com.example.docs", Developer: true, FileSharing: true})
	r.must(t, nil, "apps", "install", ipa)
	r.must(t, nil, "afc", "push", filepath.Join(src, "sub", "b.bin"), "/Documents/b.bin", "--app", "com.example.docs")
	var root []string
	out := r.must(t, nil, "afc", "ls", "/", "--app", "com.example.docs")
	root = strings.Fields(out)
	if !slices.Contains(root, "Documents") || !slices.Contains(root, "Library") {
		t.Errorf("container root = %v", root)
	}
	out = r.must(t, nil, "afc", "ls", "/", "--app", "com.example.docs", "--documents")
	if strings.TrimSpace(out) != "Documents" {
		t.Errorf("documents root = %q", out)
	}
	if _, err := r.run(t, nil, "afc", "ls", "--app", "com.example.none"); err == nil || !strings.Contains(err.Error(), "ApplicationLookupFailed") {
		t.Errorf("--app of a missing app: %v", err)
	}
	if _, err := r.run(t, nil, "afc", "ls", "--documents"); !isUsage(err) {
		t.Errorf("--documents without --app: %v", err)
	}
}
