// Package ipa reads iOS app packages: a .ipa (a zip whose Payload/ holds
// one <Name>.app), an unpacked Payload folder, or a bare .app folder. It
// reads the app's Info.plist and unpacks packages into an os.Root, with
// every size bounded and every entry name checked, so a package cannot
// write outside the folder it is unpacked into (zip-slip) or fill the disk
// with a small archive (a zip bomb). docs/protocols/instproxy.md §6
// describes the package layout.
package ipa

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/iosmux/iosmux/internal/safeplist"
)

// Limits bound what unpacking may produce. Zero fields take the defaults.
type Limits struct {
	MaxEntries int   // entries in the archive
	MaxFile    int64 // bytes of one file
	MaxTotal   int64 // bytes of all files
}

// Defaults of Limits: far above real apps (the largest App Store apps hold
// a few hundred thousand files and a few gigabytes).
const (
	DefaultMaxEntries = 500_000
	DefaultMaxFile    = 8 << 30
	DefaultMaxTotal   = 32 << 30
	// maxInfoPlist bounds Info.plist.
	maxInfoPlist = 8 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxFile <= 0 {
		l.MaxFile = DefaultMaxFile
	}
	if l.MaxTotal <= 0 {
		l.MaxTotal = DefaultMaxTotal
	}
	return l
}

// Errors callers branch on: a package that is not an app (not a zip, no
// Payload/<x>.app, no usable Info.plist) is an inspection failure; one
// that cannot be unpacked safely is an extraction failure.
var (
	ErrNotApp     = errors.New("ipa: not an app package")
	ErrExtraction = errors.New("ipa: cannot unpack the package")
)

// Info is what a host or a device needs from an app's Info.plist.
type Info struct {
	BundleID     string // CFBundleIdentifier
	Name         string // CFBundleName
	DisplayName  string // CFBundleDisplayName
	Version      string // CFBundleVersion
	ShortVersion string // CFBundleShortVersionString
	Executable   string // CFBundleExecutable
	FileSharing  bool   // UIFileSharingEnabled
	// AppDir is the .app folder: "Payload/<Name>.app" in a package, "."
	// for a bare .app folder.
	AppDir string
	// Plist is the whole Info.plist.
	Plist map[string]any
}

// ParseInfoPlist reads an Info.plist (XML or binary). CFBundleIdentifier
// is required.
func ParseInfoPlist(b []byte) (Info, error) {
	var m map[string]any
	if err := safeplist.Unmarshal(b, &m); err != nil || m == nil {
		return Info{}, fmt.Errorf("%w: Info.plist is not a property-list dictionary", ErrNotApp)
	}
	s := func(k string) string { v, _ := m[k].(string); return v }
	in := Info{BundleID: s("CFBundleIdentifier"), Name: s("CFBundleName"), DisplayName: s("CFBundleDisplayName"),
		Version: s("CFBundleVersion"), ShortVersion: s("CFBundleShortVersionString"), Executable: s("CFBundleExecutable"), Plist: m}
	in.FileSharing, _ = m["UIFileSharingEnabled"].(bool)
	if in.BundleID == "" {
		return Info{}, fmt.Errorf("%w: Info.plist has no CFBundleIdentifier", ErrNotApp)
	}
	return in, nil
}

// CleanName checks an archive entry name and returns it cleaned: a
// relative slash path with no "..", no empty or "." element, no NUL or
// backslash, not absolute. A trailing "/" (a folder) is kept.
func CleanName(name string) (string, error) {
	dir := strings.HasSuffix(name, "/")
	n := strings.TrimSuffix(name, "/")
	if n == "" || strings.HasPrefix(n, "/") || strings.ContainsAny(n, "\x00\\") {
		return "", fmt.Errorf("%w: entry %q", ErrExtraction, name)
	}
	for _, e := range strings.Split(n, "/") {
		if e == "" || e == "." || e == ".." {
			return "", fmt.Errorf("%w: entry %q", ErrExtraction, name)
		}
	}
	if dir {
		n += "/"
	}
	return n, nil
}

// appDirOf returns "Payload/<x>.app" when name is inside one.
func appDirOf(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "Payload/")
	if !ok {
		return "", false
	}
	first, _, _ := strings.Cut(rest, "/")
	if !strings.HasSuffix(first, ".app") || len(first) <= len(".app") {
		return "", false
	}
	return "Payload/" + first, true
}

// Inspect reads the app's Info.plist from a .ipa without unpacking it.
func Inspect(r io.ReaderAt, size int64) (Info, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return Info{}, fmt.Errorf("%w: not a zip archive (%v)", ErrNotApp, err)
	}
	var app string
	for _, f := range zr.File {
		if d, ok := appDirOf(f.Name); ok {
			app = d
			break
		}
	}
	if app == "" {
		return Info{}, fmt.Errorf("%w: no Payload/<name>.app in the archive", ErrNotApp)
	}
	for _, f := range zr.File {
		if f.Name != app+"/Info.plist" {
			continue
		}
		if f.UncompressedSize64 > maxInfoPlist {
			return Info{}, fmt.Errorf("%w: Info.plist of %d bytes", ErrNotApp, f.UncompressedSize64)
		}
		rc, err := f.Open()
		if err != nil {
			return Info{}, fmt.Errorf("%w: %s: %v", ErrNotApp, f.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxInfoPlist+1))
		rc.Close()
		if err != nil || len(b) > maxInfoPlist {
			return Info{}, fmt.Errorf("%w: %s: %v", ErrNotApp, f.Name, err)
		}
		in, err := ParseInfoPlist(b)
		in.AppDir = app
		return in, err
	}
	return Info{}, fmt.Errorf("%w: no %s/Info.plist in the archive", ErrNotApp, app)
}

// InspectDir reads the app in an unpacked package: root holds either
// Payload/<x>.app or, as a bare .app folder, Info.plist at its top.
func InspectDir(root *os.Root) (Info, error) {
	if b, err := readBounded(root, "Info.plist"); err == nil {
		in, err := ParseInfoPlist(b)
		in.AppDir = "."
		return in, err
	}
	ents, err := fs.ReadDir(root.FS(), "Payload")
	if err != nil {
		return Info{}, fmt.Errorf("%w: no Payload folder and no Info.plist", ErrNotApp)
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), ".app") {
			continue
		}
		app := "Payload/" + e.Name()
		b, err := readBounded(root, app+"/Info.plist")
		if err != nil {
			return Info{}, fmt.Errorf("%w: %s/Info.plist: %v", ErrNotApp, app, err)
		}
		in, err := ParseInfoPlist(b)
		in.AppDir = app
		return in, err
	}
	return Info{}, fmt.Errorf("%w: no Payload/<name>.app", ErrNotApp)
}

func readBounded(root *os.Root, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInfoPlist+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInfoPlist {
		return nil, fmt.Errorf("ipa: info.plist larger than %d bytes", maxInfoPlist)
	}
	return b, nil
}

// Extract unpacks a .ipa into dst and inspects the result. Entry names
// are checked with CleanName; file, total and entry counts are bounded by
// the bytes actually written, not the sizes the archive claims; symbolic
// links are made as links (following them later stays inside dst, which
// is an os.Root). progress, if set, is told of bytes written.
func Extract(ctx context.Context, r io.ReaderAt, size int64, dst *os.Root, lim Limits, progress func(n int64)) (Info, error) {
	lim = lim.withDefaults()
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return Info{}, fmt.Errorf("%w: not a zip archive (%v)", ErrNotApp, err)
	}
	if len(zr.File) > lim.MaxEntries {
		return Info{}, fmt.Errorf("%w: %d entries, at most %d", ErrExtraction, len(zr.File), lim.MaxEntries)
	}
	var total int64
	buf := make([]byte, 1<<20)
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return Info{}, err
		}
		name, err := CleanName(f.Name)
		if err != nil {
			return Info{}, err
		}
		mode := f.Mode()
		switch {
		case strings.HasSuffix(name, "/") || mode.IsDir():
			if err := dst.MkdirAll(strings.TrimSuffix(name, "/"), 0o755); err != nil {
				return Info{}, fmt.Errorf("%w: %s: %v", ErrExtraction, name, err)
			}
			continue
		case mode&fs.ModeSymlink != 0:
			if f.UncompressedSize64 > 4096 {
				return Info{}, fmt.Errorf("%w: link %s of %d bytes", ErrExtraction, name, f.UncompressedSize64)
			}
			rc, err := f.Open()
			if err != nil {
				return Info{}, fmt.Errorf("%w: %s: %v", ErrExtraction, name, err)
			}
			tgt, err := io.ReadAll(io.LimitReader(rc, 4097))
			rc.Close()
			if err != nil || len(tgt) > 4096 {
				return Info{}, fmt.Errorf("%w: link %s: %v", ErrExtraction, name, err)
			}
			if err := mkParent(dst, name); err != nil {
				return Info{}, err
			}
			if err := dst.Symlink(string(tgt), name); err != nil {
				return Info{}, fmt.Errorf("%w: %s: %v", ErrExtraction, name, err)
			}
			continue
		case !mode.IsRegular():
			continue // devices, pipes: nothing an app carries
		}
		if err := mkParent(dst, name); err != nil {
			return Info{}, err
		}
		n, err := extractFile(f, dst, name, lim.MaxFile, min(lim.MaxFile, lim.MaxTotal-total), buf, progress)
		total += n
		if err != nil {
			return Info{}, err
		}
	}
	return InspectDir(dst)
}

func mkParent(dst *os.Root, name string) error {
	if d := path.Dir(name); d != "." {
		if err := dst.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrExtraction, name, err)
		}
	}
	return nil
}

// extractFile writes one entry, at most limit bytes (counted as written:
// a zip's declared sizes are not trusted).
func extractFile(f *zip.File, dst *os.Root, name string, maxFile, limit int64, buf []byte, progress func(int64)) (int64, error) {
	rc, err := f.Open()
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrExtraction, name, err)
	}
	defer rc.Close()
	out, err := dst.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrExtraction, name, err)
	}
	var n int64
	for {
		k, rerr := rc.Read(buf)
		if k > 0 {
			n += int64(k)
			if n > limit {
				out.Close()
				if n > maxFile {
					return n, fmt.Errorf("%w: %s is larger than %d bytes", ErrExtraction, name, maxFile)
				}
				return n, fmt.Errorf("%w: the package unpacks to more than the limit", ErrExtraction)
			}
			if _, err := out.Write(buf[:k]); err != nil {
				out.Close()
				return n, fmt.Errorf("%w: %s: %v", ErrExtraction, name, err)
			}
			if progress != nil {
				progress(int64(k))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.Close()
			return n, fmt.Errorf("%w: %s: %v", ErrExtraction, name, rerr)
		}
	}
	if err := out.Close(); err != nil {
		return n, fmt.Errorf("%w: %s: %v", ErrExtraction, name, err)
	}
	return n, nil
}

// InspectFile opens path and inspects it as a .ipa.
func InspectFile(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Info{}, err
	}
	return Inspect(f, fi.Size())
}

// IsZip reports whether the first bytes of a file are a zip's.
func IsZip(head []byte) bool { return bytes.HasPrefix(head, []byte("PK\x03\x04")) }

// WriteApp writes a .app folder to w as a .ipa (Payload/<name>.app/…),
// stored uncompressed: the package crosses a local link, where
// compression costs more time than it saves. Symbolic links are kept as
// links.
func WriteApp(w io.Writer, appDir string) error {
	fi, err := os.Stat(appDir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("ipa: %s is not a folder", appDir)
	}
	root, err := os.OpenRoot(appDir)
	if err != nil {
		return err
	}
	defer root.Close()
	base := strings.TrimSuffix(path.Base(toSlash(appDir)), "/")
	if !strings.HasSuffix(base, ".app") {
		base += ".app"
	}
	zw := zip.NewWriter(w)
	if _, err := zw.Create("Payload/"); err != nil {
		return err
	}
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := "Payload/" + base
		if p != "." {
			name += "/" + p
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := zip.FileInfoHeader(info)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Method = name, zip.Store
		if d.IsDir() {
			hdr.Name += "/"
			_, err := zw.CreateHeader(hdr)
			return err
		}
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			t, err := root.Readlink(p)
			if err != nil {
				return err
			}
			_, err = io.WriteString(fw, t)
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := root.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(fw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("ipa: packing %s: %w", appDir, err)
	}
	return zw.Close()
}

func toSlash(p string) string { return strings.ReplaceAll(p, string(os.PathSeparator), "/") }
