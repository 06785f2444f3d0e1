package ddi

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// DefaultDownloadURL is the published split personalized DDI (the
// repository pymobiledevice3 downloads from): a folder holding
// BuildManifest.plist, Image.dmg and Image.dmg.trustcache.
const DefaultDownloadURL = "https://github.com/doronz88/DeveloperDiskImage/raw/HEAD/PersonalizedImages/Xcode_iOS_DDI_Personalized/"

// MaxDownload bounds one downloaded file (and a zip's total expansion).
const MaxDownload = 8 << 30

// DownloadConfig configures Download.
type DownloadConfig struct {
	// URL is a folder URL serving BuildManifest.plist, Image.dmg and
	// Image.dmg.trustcache, or the URL of a .zip holding a DDI folder
	// (go-ios's archive layout: <name>/Restore/…). "" means
	// DefaultDownloadURL.
	URL string
	// CacheDir is where bundles are kept, one folder each; required.
	CacheDir string
	// Name is the bundle's folder in CacheDir; "" derives it from the
	// manifest's ProductBuildVersion.
	Name string
	// Client makes the requests; nil means http.DefaultClient.
	Client *http.Client
	// Progress, if set, is told of bytes received of the file being
	// fetched (total -1 when unknown).
	Progress func(file string, done, total int64)
}

// Download fetches a personalized DDI into the cache and returns it. The
// files are checked against the manifest's digests before the folder is
// moved into place, so a torn or altered download never becomes a bundle.
func Download(ctx context.Context, cfg DownloadConfig) (*Bundle, error) {
	if cfg.CacheDir == "" {
		return nil, errors.New("ddi: download: no cache folder")
	}
	if cfg.URL == "" {
		cfg.URL = DefaultDownloadURL
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("ddi: download URL %q: want http(s)", cfg.URL)
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("ddi: %w", err)
	}
	tmp, err := os.MkdirTemp(cfg.CacheDir, ".download-*")
	if err != nil {
		return nil, fmt.Errorf("ddi: %w", err)
	}
	defer os.RemoveAll(tmp)
	if strings.HasSuffix(strings.ToLower(u.Path), ".zip") {
		err = fetchZip(ctx, cfg, u, tmp)
	} else {
		err = fetchFolder(ctx, cfg, u, tmp)
	}
	if err != nil {
		return nil, err
	}
	b, err := Open(tmp)
	if err != nil {
		return nil, fmt.Errorf("ddi: the download from %s is not a personalized DDI: %w", cfg.URL, err)
	}
	if err := b.Verify(); err != nil {
		return nil, fmt.Errorf("ddi: the download from %s: %w", cfg.URL, err)
	}
	name := cfg.Name
	if name == "" {
		name = "personalized"
		if v := b.Manifest.ProductBuildVersion; v != "" && filepath.IsLocal(v) && !strings.ContainsAny(v, `/\`) {
			name = v
		}
	}
	final := filepath.Join(cfg.CacheDir, name)
	rel, _ := filepath.Rel(tmp, b.Dir) // "." or "Restore" or deeper
	src := filepath.Join(tmp, rel)
	// Replace an older copy: move it aside, move the new one in, drop the
	// old one. A crash in between leaves either one in place.
	old := ""
	if _, err := os.Stat(final); err == nil {
		old = final + ".old"
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			return nil, fmt.Errorf("ddi: %w", err)
		}
	}
	if err := os.Rename(src, final); err != nil {
		if old != "" {
			os.Rename(old, final)
		}
		return nil, fmt.Errorf("ddi: %w", err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	syncDir(cfg.CacheDir)
	return Open(final)
}

// Verify checks that the bundle's image and trust cache are the files its
// manifest was made for: some identity's PersonalizedDMG and
// LoadableTrustCache digests equal the files' SHA-384.
func (b *Bundle) Verify() error {
	digests := map[string][]byte{}
	for i := range b.Manifest.Identities {
		id := &b.Manifest.Identities[i]
		f, err := b.Files(id)
		if err != nil {
			continue
		}
		want, okI := id.Digest(ComponentImage)
		wantTC, okT := id.Digest(ComponentTrustCache)
		if !okI || !okT {
			continue
		}
		for _, p := range []string{f.Image, f.TrustCache} {
			if digests[p] == nil {
				d, err := Digest(p)
				if err != nil {
					return err
				}
				digests[p] = d
			}
		}
		if bytes.Equal(digests[f.Image], want) && bytes.Equal(digests[f.TrustCache], wantTC) {
			return nil
		}
	}
	return errors.New("the image or trust cache does not match the digests in BuildManifest.plist (incomplete or altered download)")
}

// fetchFolder gets the three files of the split layout.
func fetchFolder(ctx context.Context, cfg DownloadConfig, base *url.URL, dir string) error {
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	for _, name := range []string{ManifestFile, "Image.dmg", "Image.dmg.trustcache"} {
		if err := fetch(ctx, cfg, base.JoinPath(name).String(), filepath.Join(dir, name), name); err != nil {
			return err
		}
	}
	return nil
}

// fetch streams one URL into path (mode 0600, synced).
func fetch(ctx context.Context, cfg DownloadConfig, src, dst, label string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return fmt.Errorf("ddi: %w", err)
	}
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("ddi: download %s: %w", src, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ddi: download %s: HTTP %s", src, resp.Status)
	}
	if resp.ContentLength > MaxDownload {
		return fmt.Errorf("ddi: download %s: %d bytes, more than %d", src, resp.ContentLength, int64(MaxDownload))
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("ddi: %w", err)
	}
	defer f.Close()
	var w io.Writer = f
	if cfg.Progress != nil {
		w = &progressWriter{w: f, file: label, total: resp.ContentLength, fn: cfg.Progress}
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, MaxDownload+1))
	if err != nil {
		return fmt.Errorf("ddi: download %s: %w", src, err)
	}
	if n > MaxDownload {
		return fmt.Errorf("ddi: download %s: more than %d bytes", src, int64(MaxDownload))
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("ddi: download %s: got %d of %d bytes", src, n, resp.ContentLength)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("ddi: %w", err)
	}
	return f.Close()
}

type progressWriter struct {
	w     io.Writer
	file  string
	done  int64
	total int64
	fn    func(string, int64, int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.fn(p.file, p.done, p.total)
	return n, err
}

// fetchZip downloads an archive and unpacks it into dir.
func fetchZip(ctx context.Context, cfg DownloadConfig, u *url.URL, dir string) error {
	archive := filepath.Join(dir, ".archive.zip")
	if err := fetch(ctx, cfg, u.String(), archive, path.Base(u.Path)); err != nil {
		return err
	}
	defer os.Remove(archive)
	zr, err := zip.OpenReader(archive)
	if err != nil {
		return fmt.Errorf("ddi: %s is not a zip archive: %w", u, err)
	}
	defer zr.Close()
	var total uint64
	for _, zf := range zr.File {
		name := filepath.FromSlash(zf.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("ddi: archive entry %q leaves its folder", zf.Name)
		}
		// macOS archivers add resource-fork shadows; they are not files of
		// the image.
		if strings.HasPrefix(zf.Name, "__MACOSX/") {
			continue
		}
		dst := filepath.Join(dir, name)
		if zf.FileInfo().IsDir() {
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return fmt.Errorf("ddi: %w", err)
			}
			continue
		}
		if !zf.Mode().IsRegular() {
			continue
		}
		total += zf.UncompressedSize64
		if total > MaxDownload {
			return fmt.Errorf("ddi: archive expands to more than %d bytes", int64(MaxDownload))
		}
		if err := unzipOne(zf, dst); err != nil {
			return err
		}
	}
	// The DDI folder may sit below the archive's root (<name>/Restore).
	if _, err := Open(dir); err == nil {
		return nil
	}
	var found string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && found == "" && !d.IsDir() && d.Name() == ManifestFile {
			found = filepath.Dir(p)
		}
		return nil
	})
	if found == "" {
		return fmt.Errorf("ddi: archive %s holds no %s", u, ManifestFile)
	}
	// Lift the folder to dir's root so Open(dir) finds it.
	lift := filepath.Join(dir, ".lift")
	if err := os.Rename(found, lift); err != nil {
		return fmt.Errorf("ddi: %w", err)
	}
	ents, err := os.ReadDir(lift)
	if err != nil {
		return fmt.Errorf("ddi: %w", err)
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(lift, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("ddi: %w", err)
		}
	}
	return os.Remove(lift)
}

func unzipOne(zf *zip.File, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("ddi: %w", err)
	}
	rc, err := zf.Open()
	if err != nil {
		return fmt.Errorf("ddi: archive entry %s: %w", zf.Name, err)
	}
	defer rc.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("ddi: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(rc, int64(zf.UncompressedSize64)+1))
	if err != nil {
		return fmt.Errorf("ddi: archive entry %s: %w", zf.Name, err)
	}
	if uint64(n) != zf.UncompressedSize64 {
		return fmt.Errorf("ddi: archive entry %s: %d bytes, header says %d", zf.Name, n, zf.UncompressedSize64)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("ddi: %w", err)
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
