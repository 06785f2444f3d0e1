package ddi

import (
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ManifestFile is the name of the manifest in a DDI folder.
const ManifestFile = "BuildManifest.plist"

// Bundle is a personalized DDI on disk: a folder holding BuildManifest.plist
// and the files its identities name (services.md §2). Three layouts are read: Xcode's Restore folder
// (…/DeveloperDiskImages/iOS_DDI/Restore, files such as 022-19271-028.dmg
// and Firmware/….dmg.trustcache, found through the manifest's paths),
// pymobiledevice3's cache (Image.dmg, Image.trustcache) and the published
// split repository (Image.dmg, Image.dmg.trustcache).
type Bundle struct {
	Dir      string
	Manifest *Manifest
}

// Files are a bundle's two files for one identity.
type Files struct {
	Image, TrustCache string
}

// Open reads the bundle at dir, or at dir/Restore (Xcode's iOS_DDI folder,
// a downloaded archive's root).
func Open(dir string) (*Bundle, error) {
	var tried []string
	for _, d := range []string{dir, filepath.Join(dir, "Restore")} {
		p := filepath.Join(d, ManifestFile)
		b, err := readBounded(p, MaxManifestSize)
		if errors.Is(err, fs.ErrNotExist) {
			tried = append(tried, p)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ddi: %w", err)
		}
		m, err := ParseManifest(b)
		if err != nil {
			return nil, fmt.Errorf("%w (%s)", err, p)
		}
		return &Bundle{Dir: d, Manifest: m}, nil
	}
	return nil, fmt.Errorf("ddi: no developer disk image at %s (looked for %s): %w", dir, strings.Join(tried, ", "), fs.ErrNotExist)
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// Fallback names when the manifest's paths are not there (the split
// layouts rename the files).
var (
	imageNames      = []string{"Image.dmg"}
	trustCacheNames = []string{"Image.dmg.trustcache", "Image.trustcache"}
)

// Files finds id's image and trust cache: the manifest's Info.Path
// relative to the bundle folder, else the split layouts' names.
func (b *Bundle) Files(id *Identity) (Files, error) {
	img, err := b.find(id, ComponentImage, imageNames)
	if err != nil {
		return Files{}, err
	}
	tc, err := b.find(id, ComponentTrustCache, trustCacheNames)
	if err != nil {
		return Files{}, err
	}
	return Files{Image: img, TrustCache: tc}, nil
}

func (b *Bundle) find(id *Identity, component string, fallback []string) (string, error) {
	var tried []string
	if rel, err := id.Path(component); err == nil {
		p := filepath.Join(b.Dir, filepath.FromSlash(rel))
		if isFile(p) {
			return p, nil
		}
		tried = append(tried, p)
	} else {
		tried = append(tried, err.Error())
	}
	for _, n := range fallback {
		p := filepath.Join(b.Dir, n)
		if isFile(p) {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("ddi: %s of the developer disk image in %s not found (tried %s)", component, b.Dir, strings.Join(tried, ", "))
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Digest is the SHA-384 of a file, what the manifest's Digest and the
// mounter's QueryPersonalizationManifest use.
func Digest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ddi: %w", err)
	}
	defer f.Close()
	h := sha512.New384()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("ddi: reading %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// Locations are the usual places of a personalized DDI, most specific
// first: iosmux's own cache (every bundle in cacheDir), Xcode's (macOS,
// installed with Xcode 15 and later), and pymobiledevice3's cache. home
// and cacheDir may be empty.
func Locations(goos, home, cacheDir string) []string {
	var out []string
	if cacheDir != "" {
		if ents, err := os.ReadDir(cacheDir); err == nil {
			for _, e := range ents {
				if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					out = append(out, filepath.Join(cacheDir, e.Name()))
				}
			}
		}
	}
	if goos == "darwin" {
		out = append(out, "/Library/Developer/DeveloperDiskImages/iOS_DDI")
		if home != "" {
			out = append(out, filepath.Join(home, "Library", "Developer", "DeveloperDiskImages", "iOS_DDI"))
		}
	}
	if home != "" {
		out = append(out, filepath.Join(home, ".pymobiledevice3", "Xcode_iOS_DDI_Personalized"))
	}
	return out
}

// Find opens the first bundle found in dirs; the error lists where it
// looked.
func Find(dirs []string) (*Bundle, error) {
	var errs []string
	for _, d := range dirs {
		b, err := Open(d)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err.Error())
		}
	}
	msg := "ddi: no developer disk image found"
	if len(dirs) > 0 {
		msg += " in " + strings.Join(dirs, ", ")
	}
	if len(errs) > 0 {
		msg += " (" + strings.Join(errs, "; ") + ")"
	}
	return nil, fmt.Errorf("%s: give one with --ddi DIR (Xcode's …/DeveloperDiskImages/iOS_DDI, or a Restore folder) or fetch one with --download: %w", msg, fs.ErrNotExist)
}
