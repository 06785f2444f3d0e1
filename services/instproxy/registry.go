package instproxy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/internal/ipa"
)

// The device's app store (docs/protocols/instproxy.md §7): installed apps
// are real folders under Dir, recorded in Dir/apps.json (written
// atomically), so a simulated device keeps them across restarts.
//
//	Dir/apps.json                    the records
//	Dir/bundles/<uuid>/<Name>.app/   each app's bundle, as unpacked
//	Dir/data/<uuid>/                 each app's data container
//	Dir/staging/<random>/            packages being unpacked (cleared at start)

// RegistryConfig configures NewRegistry.
type RegistryConfig struct {
	// Dir holds the apps; it is created if missing.
	Dir string
	// Limits bound unpacking a package.
	Limits ipa.Limits
	// System are the built-in apps every device lists (not stored; they
	// cannot be uninstalled).
	System []SystemApp
}

// SystemApp is a built-in app.
type SystemApp struct {
	BundleID, Name, Version, ShortVersion string
}

// Record is one installed app.
type Record struct {
	BundleID   string    `json:"bundleID"`
	BundleUUID string    `json:"bundleUUID"`
	DataUUID   string    `json:"dataUUID"`
	AppDir     string    `json:"appDir"` // "<Name>.app"
	Developer  bool      `json:"developer"`
	Size       int64     `json:"size"` // bytes of the bundle
	Installed  time.Time `json:"installed"`
	System     bool      `json:"-"`
	// Info is the bundle's Info.plist.
	Info map[string]any `json:"-"`
}

// FileSharing is the app's UIFileSharingEnabled.
func (r Record) FileSharing() bool { b, _ := r.Info["UIFileSharingEnabled"].(bool); return b }

// Device paths of a record (SIM: the folders an iOS device uses).
func (r Record) devicePath() string {
	if r.System {
		return "/Applications/" + r.AppDir
	}
	return "/private/var/containers/Bundle/Application/" + r.BundleUUID + "/" + r.AppDir
}

func (r Record) deviceContainer() string {
	return "/private/var/mobile/Containers/Data/Application/" + r.DataUUID
}

// App is the record as an app dictionary: its Info.plist and the keys a
// device adds.
func (r Record) App() App {
	a := App{}
	for k, v := range r.Info {
		a[k] = v
	}
	typ := TypeUser
	if r.System {
		typ = TypeSystem
	}
	a[KeyApplicationType] = typ
	a[KeyPath] = r.devicePath()
	if !r.System {
		c := r.deviceContainer()
		a[KeyContainer] = c
		a[KeyEnvironmentVariables] = map[string]any{"CFFIXED_USER_HOME": c, "HOME": c, "TMPDIR": c + "/tmp"}
		a[KeyStaticDiskUsage] = uint64(r.Size)
		a[KeyDynamicDiskUsage] = uint64(0)
		a["IsDeveloperApp"] = r.Developer
	}
	return a
}

// Registry is the device's installed apps. Safe for concurrent use;
// installs run one at a time.
type Registry struct {
	cfg RegistryConfig

	installMu sync.Mutex // one install or uninstall at a time
	mu        sync.Mutex
	apps      map[string]Record
	system    map[string]Record
}

const registryFile = "apps.json"

// NewRegistry loads the apps recorded in cfg.Dir. A record whose bundle
// is gone or unreadable is dropped; leftover staging folders are removed.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if cfg.Dir == "" {
		return nil, errors.New("instproxy: registry without a folder")
	}
	for _, d := range []string{"bundles", "data", "staging"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("instproxy: %w", err)
		}
	}
	os.RemoveAll(filepath.Join(cfg.Dir, "staging"))
	os.MkdirAll(filepath.Join(cfg.Dir, "staging"), 0o755)
	r := &Registry{cfg: cfg, apps: map[string]Record{}, system: map[string]Record{}}
	for _, s := range cfg.System {
		name := s.Name
		r.system[s.BundleID] = Record{BundleID: s.BundleID, AppDir: name + ".app", System: true, Info: map[string]any{
			"CFBundleIdentifier": s.BundleID, "CFBundleName": name, "CFBundleDisplayName": name, "CFBundleExecutable": name,
			"CFBundleVersion": s.Version, "CFBundleShortVersionString": s.ShortVersion}}
	}
	b, err := os.ReadFile(filepath.Join(cfg.Dir, registryFile))
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("instproxy: %w", err)
	}
	var recs []Record
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("instproxy: %s: %w", filepath.Join(cfg.Dir, registryFile), err)
	}
	for _, rec := range recs {
		if !safeElem(rec.BundleUUID) || !safeElem(rec.DataUUID) || !safeElem(rec.AppDir) {
			continue
		}
		info, err := readInfo(r.bundleDir(rec))
		if err != nil || info.BundleID != rec.BundleID {
			continue
		}
		rec.Info = info.Plist
		r.apps[rec.BundleID] = rec
	}
	return r, nil
}

func safeElem(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`)
}

func readInfo(appDir string) (ipa.Info, error) {
	root, err := os.OpenRoot(appDir)
	if err != nil {
		return ipa.Info{}, err
	}
	defer root.Close()
	return ipa.InspectDir(root)
}

func (r *Registry) bundleDir(rec Record) string {
	return filepath.Join(r.cfg.Dir, "bundles", rec.BundleUUID, rec.AppDir)
}

// ContainerDir is the host folder of an installed app's data container.
func (r *Registry) ContainerDir(rec Record) string {
	return filepath.Join(r.cfg.Dir, "data", rec.DataUUID)
}

// BundleDir is the host folder of an installed app's bundle.
func (r *Registry) BundleDir(rec Record) string { return r.bundleDir(rec) }

// Lookup finds an app, built-in or installed.
func (r *Registry) Lookup(bundleID string) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, ok := r.apps[bundleID]; ok {
		return rec, true
	}
	rec, ok := r.system[bundleID]
	return rec, ok
}

// Records lists every app, built-in first, each group by bundle id.
func (r *Registry) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sys, user []Record
	for _, rec := range r.system {
		sys = append(sys, rec)
	}
	for _, rec := range r.apps {
		user = append(user, rec)
	}
	by := func(l []Record) { sort.Slice(l, func(i, j int) bool { return l[i].BundleID < l[j].BundleID }) }
	by(sys)
	by(user)
	return append(sys, user...)
}

func (r *Registry) saveLocked() error {
	recs := make([]Record, 0, len(r.apps))
	for _, rec := range r.apps {
		recs = append(recs, rec)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].BundleID < recs[j].BundleID })
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(r.cfg.Dir, registryFile), append(b, '\n'), 0o600)
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]))
}

// NewStaging makes a fresh folder to unpack a package into, on the same
// file system as the bundles (the install moves it into place).
func (r *Registry) NewStaging() (string, error) {
	dir := filepath.Join(r.cfg.Dir, "staging", newUUID())
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("instproxy: %w", err)
	}
	return dir, nil
}

// Progress reporting of the install: the stages and percentages a device
// reports (public ideviceinstaller output; docs/protocols/instproxy.md
// §4).
var installStages = []struct {
	status  string
	percent int
}{
	{"CreatingStagingDirectory", 5}, {"ExtractingPackage", 15}, {"InspectingPackage", 20},
	{"TakingInstallLock", 20}, {"PreflightingApplication", 30}, {"InstallingEmbeddedProfile", 30},
	{"VerifyingApplication", 40}, {"CreatingContainer", 50}, {"InstallingApplication", 60},
	{"PostflightingApplication", 70}, {"SandboxingApplication", 80}, {"GeneratingApplicationMap", 90},
}

// ProgressFunc is told of each install stage.
type ProgressFunc func(percent int, status string)

func stageTo(progress ProgressFunc, from, to string) {
	if progress == nil {
		return
	}
	on := from == ""
	for _, s := range installStages {
		if s.status == from {
			on = true
		}
		if on {
			progress(s.percent, s.status)
		}
		if s.status == to {
			return
		}
	}
}

func deviceErr(name string, err error) *DeviceError {
	return &DeviceError{Name: name, Description: err.Error()}
}

// classify turns an unpacking error into the device's error.
func classify(err error) *DeviceError {
	var de *DeviceError
	switch {
	case errors.As(err, &de):
		return de
	case errors.Is(err, ipa.ErrNotApp):
		return deviceErr(ErrorPackageInspectionFailed, err)
	case errors.Is(err, ipa.ErrExtraction):
		return deviceErr(ErrorPackageExtractionFailed, err)
	}
	return deviceErr(ErrorAPIInternalError, err)
}

// InstallFile unpacks a .ipa and installs it.
func (r *Registry) InstallFile(ctx context.Context, pkg io.ReaderAt, size int64, progress ProgressFunc) (Record, error) {
	stageTo(progress, "", "ExtractingPackage")
	dir, err := r.NewStaging()
	if err != nil {
		return Record{}, classify(err)
	}
	defer os.RemoveAll(dir)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Record{}, classify(err)
	}
	_, err = ipa.Extract(ctx, pkg, size, root, r.cfg.Limits, nil)
	root.Close()
	if err != nil {
		return Record{}, classify(err)
	}
	return r.installStaged(ctx, dir, "InspectingPackage", progress)
}

// InstallDir copies an unpacked package (Payload/<x>.app, or a bare .app
// folder named name) and installs it.
func (r *Registry) InstallDir(ctx context.Context, src *os.Root, name string, progress ProgressFunc) (Record, error) {
	stageTo(progress, "", "ExtractingPackage")
	dir, err := r.NewStaging()
	if err != nil {
		return Record{}, classify(err)
	}
	defer os.RemoveAll(dir)
	dst, err := os.OpenRoot(dir)
	if err != nil {
		return Record{}, classify(err)
	}
	defer dst.Close()
	into := "."
	if _, err := src.Stat("Info.plist"); err == nil {
		if !strings.HasSuffix(name, ".app") {
			name += ".app"
		}
		if !safeElem(name) {
			return Record{}, deviceErr(ErrorPackageInspectionFailed, fmt.Errorf("bad package name %q", name))
		}
		into = "Payload/" + name
	}
	if err := copyTree(ctx, src, dst, into, r.cfg.Limits); err != nil {
		return Record{}, classify(err)
	}
	return r.installStaged(ctx, dir, "InspectingPackage", progress)
}

// InstallStaged installs what NewStaging's folder holds: Payload/<x>.app
// (the zip conduit unpacks there). The folder is consumed.
func (r *Registry) InstallStaged(ctx context.Context, dir string, progress ProgressFunc) (Record, error) {
	defer os.RemoveAll(dir)
	return r.installStaged(ctx, dir, "InspectingPackage", progress)
}

func (r *Registry) installStaged(ctx context.Context, dir, from string, progress ProgressFunc) (Record, error) {
	stageTo(progress, from, "InspectingPackage")
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Record{}, classify(err)
	}
	info, err := ipa.InspectDir(root)
	if err != nil {
		root.Close()
		return Record{}, classify(err)
	}
	if info.AppDir == "." {
		root.Close()
		return Record{}, deviceErr(ErrorPackageInspectionFailed, errors.New("no Payload/<name>.app in the package"))
	}
	appDir := path.Base(info.AppDir)
	_, provErr := root.Stat(info.AppDir + "/embedded.mobileprovision")
	size := treeSize(root, info.AppDir)
	root.Close()
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	stageTo(progress, "TakingInstallLock", "VerifyingApplication")
	r.installMu.Lock()
	defer r.installMu.Unlock()
	r.mu.Lock()
	old, upgrade := r.apps[info.BundleID]
	_, system := r.system[info.BundleID]
	r.mu.Unlock()
	if system {
		return Record{}, deviceErr(ErrorInstallProhibited, fmt.Errorf("%s is a system app", info.BundleID))
	}
	rec := Record{BundleID: info.BundleID, BundleUUID: newUUID(), DataUUID: newUUID(), AppDir: appDir,
		Developer: provErr == nil, Size: size, Installed: time.Now().UTC(), Info: info.Plist}
	if upgrade {
		rec.DataUUID = old.DataUUID // an upgrade keeps the app's data
	}
	stageTo(progress, "CreatingContainer", "CreatingContainer")
	cont := r.ContainerDir(rec)
	for _, d := range []string{"Documents", "Library/Caches", "Library/Preferences", "tmp"} {
		if err := os.MkdirAll(filepath.Join(cont, d), 0o755); err != nil {
			return Record{}, classify(err)
		}
	}
	stageTo(progress, "InstallingApplication", "InstallingApplication")
	if err := os.MkdirAll(filepath.Join(r.cfg.Dir, "bundles", rec.BundleUUID), 0o755); err != nil {
		return Record{}, classify(err)
	}
	if err := os.Rename(filepath.Join(dir, filepath.FromSlash(info.AppDir)), r.bundleDir(rec)); err != nil {
		os.RemoveAll(filepath.Join(r.cfg.Dir, "bundles", rec.BundleUUID))
		return Record{}, classify(err)
	}
	stageTo(progress, "PostflightingApplication", "GeneratingApplicationMap")
	r.mu.Lock()
	r.apps[rec.BundleID] = rec
	err = r.saveLocked()
	if err != nil {
		if upgrade {
			r.apps[rec.BundleID] = old
		} else {
			delete(r.apps, rec.BundleID)
		}
	}
	r.mu.Unlock()
	if err != nil {
		os.RemoveAll(filepath.Join(r.cfg.Dir, "bundles", rec.BundleUUID))
		return Record{}, classify(err)
	}
	if upgrade {
		os.RemoveAll(filepath.Join(r.cfg.Dir, "bundles", old.BundleUUID))
	}
	return rec, nil
}

// Uninstall removes an app, its bundle and its data. It reports whether
// the app was installed; a built-in app fails with UninstallProhibited.
func (r *Registry) Uninstall(bundleID string) (bool, error) {
	r.installMu.Lock()
	defer r.installMu.Unlock()
	r.mu.Lock()
	rec, ok := r.apps[bundleID]
	_, system := r.system[bundleID]
	if ok {
		delete(r.apps, bundleID)
		if err := r.saveLocked(); err != nil {
			r.apps[bundleID] = rec
			r.mu.Unlock()
			return false, classify(err)
		}
	}
	r.mu.Unlock()
	if system {
		return false, deviceErr(ErrorUninstallProhibited, fmt.Errorf("%s is a system app", bundleID))
	}
	if !ok {
		return false, nil
	}
	os.RemoveAll(filepath.Join(r.cfg.Dir, "bundles", rec.BundleUUID))
	os.RemoveAll(r.ContainerDir(rec))
	return true, nil
}

func treeSize(root *os.Root, dir string) int64 {
	var n int64
	fs.WalkDir(root.FS(), dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// copyTree copies src into dst/into, within the unpacking limits;
// symbolic links are copied as links.
func copyTree(ctx context.Context, src, dst *os.Root, into string, lim ipa.Limits) error {
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = ipa.DefaultMaxEntries
	}
	if lim.MaxTotal <= 0 {
		lim.MaxTotal = ipa.DefaultMaxTotal
	}
	var entries int
	var total int64
	return fs.WalkDir(src.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%w: %v", ipa.ErrExtraction, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		entries++
		if entries > lim.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ipa.ErrExtraction, lim.MaxEntries)
		}
		to := path.Join(into, p)
		switch {
		case d.IsDir():
			return dst.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			t, err := src.Readlink(p)
			if err != nil {
				return err
			}
			return dst.Symlink(t, to)
		case !d.Type().IsRegular():
			return nil
		}
		in, err := src.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := dst.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		n, err := io.Copy(out, io.LimitReader(in, lim.MaxTotal-total+1))
		total += n
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil && total > lim.MaxTotal {
			err = fmt.Errorf("%w: more than %d bytes", ipa.ErrExtraction, lim.MaxTotal)
		}
		return err
	})
}
