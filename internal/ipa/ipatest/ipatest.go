// Package ipatest builds app packages for tests: a .ipa with a real
// Info.plist, optional extra files and optional bulk of incompressible
// bytes (to make a package of a given size).
package ipatest

import (
	"archive/zip"
	"io"
	"math/rand/v2"
	"os"
	"sort"

	"howett.net/plist"
)

// Spec describes the app.
type Spec struct {
	BundleID     string
	Name         string // CFBundleName and the .app folder's name; "" means "Demo"
	Version      string // CFBundleVersion; "" means "1"
	ShortVersion string // CFBundleShortVersionString; "" means "1.0"
	FileSharing  bool   // UIFileSharingEnabled
	// Developer adds embedded.mobileprovision, as development builds
	// carry and App Store builds do not.
	Developer bool
	// Files are added under the .app folder (slash paths).
	Files map[string][]byte
	// Bulk adds a file of this many random bytes, stored uncompressed.
	Bulk int64
	// Seed makes Bulk's bytes.
	Seed uint64
}

func (s Spec) name() string {
	if s.Name == "" {
		return "Demo"
	}
	return s.Name
}

// InfoPlist is the Info.plist Build writes.
func (s Spec) InfoPlist() map[string]any {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	m := map[string]any{
		"CFBundleIdentifier":         s.BundleID,
		"CFBundleName":               s.name(),
		"CFBundleDisplayName":        s.name(),
		"CFBundleExecutable":         s.name(),
		"CFBundleVersion":            def(s.Version, "1"),
		"CFBundleShortVersionString": def(s.ShortVersion, "1.0"),
		"CFBundlePackageType":        "APPL",
		"MinimumOSVersion":           "17.0",
		"UIDeviceFamily":             []any{uint64(1), uint64(2)},
		"CFBundleSupportedPlatforms": []any{"iPhoneOS"},
	}
	if s.FileSharing {
		m["UIFileSharingEnabled"] = true
	}
	return m
}

// Build writes the package to w.
func Build(w io.Writer, s Spec) error {
	zw := zip.NewWriter(w)
	app := "Payload/" + s.name() + ".app/"
	if _, err := zw.Create("Payload/"); err != nil {
		return err
	}
	if _, err := zw.Create(app); err != nil {
		return err
	}
	info, err := plist.Marshal(s.InfoPlist(), plist.BinaryFormat)
	if err != nil {
		return err
	}
	files := map[string][]byte{"Info.plist": info, s.name(): []byte("\xcf\xfa\xed\xfe executable of " + s.BundleID)}
	if s.Developer {
		files["embedded.mobileprovision"] = []byte("development profile")
	}
	for k, v := range s.Files {
		files[k] = v
	}
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := zw.Create(app + n)
		if err != nil {
			return err
		}
		if _, err := f.Write(files[n]); err != nil {
			return err
		}
	}
	if s.Bulk > 0 {
		f, err := zw.CreateHeader(&zip.FileHeader{Name: app + "Assets.car", Method: zip.Store})
		if err != nil {
			return err
		}
		src := rand.NewChaCha8([32]byte{byte(s.Seed), byte(s.Seed >> 8), 'i', 'p', 'a'})
		if _, err := io.CopyN(f, src, s.Bulk); err != nil {
			return err
		}
	}
	return zw.Close()
}

// WriteFile builds the package into path.
func WriteFile(path string, s Spec) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Build(f, s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
