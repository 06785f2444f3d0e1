package ddi

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"howett.net/plist"
)

const vectorDir = "testdata/ddi_restore"

func TestParseManifestVector(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(vectorDir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Identities) != 2 {
		t.Fatalf("got %d identities, want 2", len(m.Identities))
	}
	id, err := m.Select(14, 0x8120)
	if err != nil {
		t.Fatal(err)
	}
	if id != &m.Identities[1] {
		t.Errorf("selected identity %+v, want the second", id)
	}
	if p, err := id.Path(ComponentImage); err != nil || p != "Image.dmg" {
		t.Errorf("image path %q, %v", p, err)
	}
	d, _ := id.Digest(ComponentImage)
	if got := hex.EncodeToString(d); got != "1a3c25955e0d9ec52862e025047c57cd1952982739148c155f392014219290539c2f0be812cb304fb65cb57a1208910b" {
		t.Errorf("image digest %s", got)
	}
}

func TestSelectMissingIdentity(t *testing.T) {
	b, _ := Open(vectorDir)
	_, err := b.Manifest.Select(0x1A, 0x8020)
	if !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("got %v, want ErrNoIdentity", err)
	}
	for _, want := range []string{"BoardId 0x1A, ChipID 0x8020", "BoardId 0xC/ChipID 0x8110", "BoardId 0xE/ChipID 0x8120", "--download"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestParseID(t *testing.T) {
	for _, tt := range []struct {
		in   any
		want uint64
		ok   bool
	}{
		{"0x0E", 14, true}, {"0E", 14, true}, {"0X8120", 0x8120, true}, {uint64(33056), 33056, true},
		{int64(-1), 0, false}, {"", 0, false}, {"0x", 0, false}, {"zz", 0, false}, {"0x1ffffffff", 0, false}, {true, 0, false},
	} {
		got, ok := parseID(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseID(%v) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseManifestBad(t *testing.T) {
	enc := func(v any) []byte { b, _ := plist.Marshal(v, plist.XMLFormat); return b }
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"text", []byte("hello")},
		{"array", enc([]any{1})},
		{"no identities", enc(map[string]any{"ProductBuildVersion": "x"})},
		{"identities not array", enc(map[string]any{"BuildIdentities": "x"})},
		{"no usable identity", enc(map[string]any{"BuildIdentities": []any{map[string]any{"ApBoardID": "zz", "ApChipID": "0x1", "Manifest": map[string]any{}}}})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseManifest(tt.in); !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestPathEscape(t *testing.T) {
	for _, p := range []string{"../x.dmg", "/etc/passwd", "a/../../x"} {
		id := &Identity{Manifest: map[string]any{ComponentImage: map[string]any{"Info": map[string]any{"Path": p}}}}
		if _, err := id.Path(ComponentImage); err == nil {
			t.Errorf("Path %q accepted", p)
		}
	}
}

// copyBundle copies the vector bundle into a layout: files renamed as
// names says (source → destination, relative to dir).
func copyBundle(t *testing.T, dir string, names map[string]string) {
	t.Helper()
	for src, dst := range names {
		b, err := os.ReadFile(filepath.Join(vectorDir, src))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, dst)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLayouts(t *testing.T) {
	for _, tt := range []struct {
		name   string
		files  map[string]string
		open   string
		wantTC string
	}{
		{"xcode iOS_DDI", map[string]string{ManifestFile: "Restore/" + ManifestFile, "Image.dmg": "Restore/Image.dmg", "Image.dmg.trustcache": "Restore/Image.dmg.trustcache"}, ".", "Restore/Image.dmg.trustcache"},
		{"restore folder", map[string]string{ManifestFile: ManifestFile, "Image.dmg": "Image.dmg", "Image.dmg.trustcache": "Image.dmg.trustcache"}, ".", "Image.dmg.trustcache"},
		{"pmd3 cache", map[string]string{ManifestFile: ManifestFile, "Image.dmg": "Image.dmg", "Image.dmg.trustcache": "Image.trustcache"}, ".", "Image.trustcache"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			copyBundle(t, dir, tt.files)
			b, err := Open(filepath.Join(dir, tt.open))
			if err != nil {
				t.Fatal(err)
			}
			id, err := b.Manifest.Select(14, 0x8120)
			if err != nil {
				t.Fatal(err)
			}
			f, err := b.Files(id)
			if err != nil {
				t.Fatal(err)
			}
			if f.TrustCache != filepath.Join(dir, tt.wantTC) {
				t.Errorf("trust cache %s, want %s", f.TrustCache, tt.wantTC)
			}
			if err := b.Verify(); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestFind(t *testing.T) {
	home, cache := t.TempDir(), t.TempDir()
	if _, err := Find(Locations("linux", home, cache)); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), ".pymobiledevice3") {
		t.Fatalf("empty: %v", err)
	}
	copyBundle(t, filepath.Join(home, ".pymobiledevice3", "Xcode_iOS_DDI_Personalized"),
		map[string]string{ManifestFile: ManifestFile, "Image.dmg": "Image.dmg", "Image.dmg.trustcache": "Image.trustcache"})
	b, err := Find(Locations("linux", home, cache))
	if err != nil || !strings.Contains(b.Dir, ".pymobiledevice3") {
		t.Fatalf("pmd3 cache: %v, %v", b, err)
	}
	// iosmux's cache comes first.
	copyBundle(t, filepath.Join(cache, "27A1"), map[string]string{ManifestFile: ManifestFile, "Image.dmg": "Image.dmg", "Image.dmg.trustcache": "Image.dmg.trustcache"})
	b, err = Find(Locations("darwin", home, cache))
	if err != nil || b.Dir != filepath.Join(cache, "27A1") {
		t.Fatalf("iosmux cache: %+v, %v", b, err)
	}
	if l := Locations("darwin", home, ""); !strings.Contains(strings.Join(l, " "), "/Library/Developer/DeveloperDiskImages/iOS_DDI") {
		t.Errorf("darwin locations %v lack Xcode's", l)
	}
}

// server serves the vector bundle as the split layout under /split/ and as
// a go-ios-style archive at /ddi.zip; corrupt makes Image.dmg wrong.
func server(t *testing.T, corrupt bool) *httptest.Server {
	t.Helper()
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for _, n := range []string{ManifestFile, "Image.dmg", "Image.dmg.trustcache"} {
		b, _ := os.ReadFile(filepath.Join(vectorDir, n))
		w, _ := zw.Create("ddi-test/Restore/" + n)
		w.Write(b)
	}
	zw.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/split/{name}", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(filepath.Join(vectorDir, filepath.Base(r.PathValue("name"))))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if corrupt && r.PathValue("name") == "Image.dmg" {
			b[0] ^= 1
		}
		w.Write(b)
	})
	mux.HandleFunc("/ddi.zip", func(w http.ResponseWriter, r *http.Request) { w.Write(zb.Bytes()) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestDownload(t *testing.T) {
	srv := server(t, false)
	for _, tt := range []struct{ name, url string }{{"split", srv.URL + "/split"}, {"zip", srv.URL + "/ddi.zip"}} {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			var progressed bool
			cfg := DownloadConfig{URL: tt.url, CacheDir: cache, Name: "test",
				Progress: func(string, int64, int64) { progressed = true }}
			b, err := Download(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if b.Dir != filepath.Join(cache, "test") || !progressed {
				t.Errorf("bundle at %s, progress %v", b.Dir, progressed)
			}
			// Again: replaces the copy; nothing else is left in the cache.
			if _, err := Download(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(cache)
			if len(ents) != 1 || ents[0].Name() != "test" {
				t.Errorf("cache holds %v", ents)
			}
			if st, _ := os.Stat(filepath.Join(cache, "test", "Image.dmg")); st.Mode().Perm() != 0o600 {
				t.Errorf("image mode %v, want 0600", st.Mode())
			}
		})
	}
}

func TestDownloadRejectsCorruptOrMissing(t *testing.T) {
	srv := server(t, true)
	cache := t.TempDir()
	if _, err := Download(context.Background(), DownloadConfig{URL: srv.URL + "/split/", CacheDir: cache}); err == nil || !strings.Contains(err.Error(), "does not match the digests") {
		t.Fatalf("corrupt download: %v", err)
	}
	if _, err := Download(context.Background(), DownloadConfig{URL: srv.URL + "/nothing/", CacheDir: cache}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing download: %v", err)
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		t.Errorf("failed downloads left %v in the cache", ents)
	}
}

func FuzzParseManifest(f *testing.F) {
	b, err := os.ReadFile(filepath.Join(vectorDir, ManifestFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	bin, _ := plist.Marshal(map[string]any{"BuildIdentities": []any{map[string]any{"ApBoardID": "0x0E", "ApChipID": uint64(0x8120),
		"Manifest": map[string]any{ComponentImage: map[string]any{"Info": map[string]any{"Path": "x"}}}}}}, plist.BinaryFormat)
	f.Add(bin)
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ParseManifest(in)
		if err != nil {
			return
		}
		for i := range m.Identities {
			id := &m.Identities[i]
			if got, err := m.Select(id.BoardID, id.ChipID); err != nil || got.BoardID != id.BoardID {
				t.Fatalf("Select of a listed identity: %v", err)
			}
			for _, c := range []string{ComponentImage, ComponentTrustCache} {
				if p, err := id.Path(c); err == nil && (filepath.IsAbs(p) || strings.HasPrefix(p, "..")) {
					t.Fatalf("Path %q escapes", p)
				}
				id.Digest(c)
			}
		}
	})
}
