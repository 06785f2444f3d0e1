package ipa

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/internal/ipa/ipatest"
)

func build(t *testing.T, s ipatest.Spec) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := ipatest.Build(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestInspectAndExtract(t *testing.T) {
	b := build(t, ipatest.Spec{BundleID: "com.example.demo", Name: "Demo", Version: "42", ShortVersion: "4.2", FileSharing: true,
		Files: map[string][]byte{"Frameworks/x.dylib": []byte("dylib")}})
	in, err := Inspect(bytes.NewReader(b), int64(len(b)))
	if err != nil || in.BundleID != "com.example.demo" || in.Version != "42" || in.ShortVersion != "4.2" || in.Name != "Demo" ||
		!in.FileSharing || in.AppDir != "Payload/Demo.app" || in.Executable != "Demo" {
		t.Fatalf("Inspect = %+v, %v", in, err)
	}
	dir := t.TempDir()
	root, _ := os.OpenRoot(dir)
	defer root.Close()
	var n int64
	in2, err := Extract(context.Background(), bytes.NewReader(b), int64(len(b)), root, Limits{}, func(k int64) { n += k })
	if err != nil || in2.BundleID != in.BundleID || in2.AppDir != in.AppDir || n == 0 {
		t.Fatalf("Extract = %+v, %v (%d bytes)", in2, err, n)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "Payload/Demo.app/Frameworks/x.dylib")); string(got) != "dylib" {
		t.Errorf("extracted file holds %q", got)
	}
	// A bare .app folder inspects too, and WriteApp packs it back.
	app, _ := os.OpenRoot(filepath.Join(dir, "Payload/Demo.app"))
	defer app.Close()
	if in3, err := InspectDir(app); err != nil || in3.BundleID != in.BundleID || in3.AppDir != "." {
		t.Errorf("InspectDir of the .app = %+v, %v", in3, err)
	}
	var packed bytes.Buffer
	if err := WriteApp(&packed, filepath.Join(dir, "Payload/Demo.app")); err != nil {
		t.Fatal(err)
	}
	if in4, err := Inspect(bytes.NewReader(packed.Bytes()), int64(packed.Len())); err != nil || in4.BundleID != in.BundleID {
		t.Errorf("Inspect of WriteApp's package = %+v, %v", in4, err)
	}
}

func TestNotApp(t *testing.T) {
	zipOf := func(files map[string]string) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for n, c := range files {
			w, _ := zw.Create(n)
			io.WriteString(w, c)
		}
		zw.Close()
		return b.Bytes()
	}
	for name, b := range map[string][]byte{
		"not a zip":     []byte("this is not a zip file at all"),
		"empty":         nil,
		"no payload":    zipOf(map[string]string{"foo/bar": "x"}),
		"no info":       zipOf(map[string]string{"Payload/A.app/A": "x"}),
		"bad info":      zipOf(map[string]string{"Payload/A.app/Info.plist": "garbage"}),
		"no identifier": zipOf(map[string]string{"Payload/A.app/Info.plist": `<?xml version="1.0"?><plist version="1.0"><dict><key>CFBundleName</key><string>A</string></dict></plist>`}),
		"app is a file": zipOf(map[string]string{"Payload/.app": "x"}),
	} {
		_, err := Inspect(bytes.NewReader(b), int64(len(b)))
		if !errors.Is(err, ErrNotApp) {
			t.Errorf("%s: Inspect = %v, want ErrNotApp", name, err)
		}
	}
}

// TestExtractSafety: zip-slip names, links out of the folder, and archives
// that unpack past the limits fail, and nothing lands outside.
func TestExtractSafety(t *testing.T) {
	type entry struct {
		name, body string
		link       bool
		deflate    bool
	}
	zipOf := func(es ...entry) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for _, e := range es {
			h := &zip.FileHeader{Name: e.name, Method: zip.Store}
			if e.deflate {
				h.Method = zip.Deflate
			}
			if e.link {
				h.SetMode(os.ModeSymlink | 0o777)
			}
			w, _ := zw.CreateHeader(h)
			io.WriteString(w, e.body)
		}
		zw.Close()
		return b.Bytes()
	}
	info := entry{name: "Payload/A.app/Info.plist", body: `<?xml version="1.0"?><plist version="1.0"><dict><key>CFBundleIdentifier</key><string>a</string></dict></plist>`}
	big := strings.Repeat("0", 3<<20)
	for _, tc := range []struct {
		name string
		zip  []byte
		lim  Limits
	}{
		{"dot-dot", zipOf(info, entry{name: "Payload/A.app/../../../evil", body: "x"}), Limits{}},
		{"leading dot-dot", zipOf(entry{name: "../evil", body: "x"}, info), Limits{}},
		{"absolute", zipOf(info, entry{name: "/tmp/evil", body: "x"}), Limits{}},
		{"backslash", zipOf(info, entry{name: "Payload\\..\\..\\evil", body: "x"}), Limits{}},
		{"link out then through", zipOf(info, entry{name: "Payload/A.app/l", body: "../../../outside", link: true}, entry{name: "Payload/A.app/l/evil", body: "x"}), Limits{}},
		{"absolute link then through", zipOf(info, entry{name: "Payload/A.app/l", body: "/tmp", link: true}, entry{name: "Payload/A.app/l/evil", body: "x"}), Limits{}},
		{"file too big", zipOf(info, entry{name: "Payload/A.app/big", body: big, deflate: true}), Limits{MaxFile: 1 << 20}},
		{"total too big", zipOf(info, entry{name: "Payload/A.app/b1", body: big, deflate: true}, entry{name: "Payload/A.app/b2", body: big, deflate: true}), Limits{MaxTotal: 5 << 20}},
		{"too many entries", zipOf(info, entry{name: "Payload/A.app/1"}, entry{name: "Payload/A.app/2"}), Limits{MaxEntries: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dst, outside := filepath.Join(base, "dst"), filepath.Join(base, "outside")
			os.Mkdir(dst, 0o755)
			os.Mkdir(outside, 0o755)
			root, _ := os.OpenRoot(dst)
			defer root.Close()
			_, err := Extract(context.Background(), bytes.NewReader(tc.zip), int64(len(tc.zip)), root, tc.lim, nil)
			if !errors.Is(err, ErrExtraction) {
				t.Errorf("Extract = %v, want ErrExtraction", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("something was written outside: %v", ents)
			}
			if ents, _ := os.ReadDir(base); len(ents) != 2 {
				t.Errorf("something was written next to the destination: %v", ents)
			}
			if _, err := os.Stat("/tmp/evil"); err == nil {
				t.Error("/tmp/evil exists")
			}
		})
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"a/b": "a/b", "a/b/": "a/b/", "Payload/X.app/Info.plist": "Payload/X.app/Info.plist"} {
		if got, err := CleanName(in); err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "/", "/a", "a/../b", "..", "a//b", "./a", "a\\b", "a\x00b", "a/./b"} {
		if _, err := CleanName(in); err == nil {
			t.Errorf("CleanName(%q) accepted", in)
		}
	}
}

// FuzzInspect: any bytes as a package: no panic, and an accepted package
// has a bundle id.
func FuzzInspect(f *testing.F) {
	var b bytes.Buffer
	ipatest.Build(&b, ipatest.Spec{BundleID: "com.example.fuzz"})
	f.Add(b.Bytes())
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := Inspect(bytes.NewReader(b), int64(len(b)))
		if err == nil && in.BundleID == "" {
			t.Fatal("accepted without a bundle id")
		}
		ParseInfoPlist(b)
		CleanName(string(b))
	})
}
