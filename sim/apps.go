package sim

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/housearrest"
	"github.com/iosmux/iosmux/services/instproxy"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/services/zipconduit"
)

// The simulated iPhone's files and apps: a real file tree per device (the
// AFC root, "Media") and the installed-app registry, both under the
// device's state directory, served by AFC, house_arrest,
// installation_proxy and the streaming zip conduit over RSD and over
// usbmuxd lockdown alike (docs/protocols/afc.md §8, housearrest.md §5,
// instproxy.md §7, zipconduit.md §5). A device without a state directory
// keeps them in a temporary folder removed at Close.
//
//	<state>/Media/      DCIM, Downloads, Books, PublicStaging, …
//	<state>/apps/       apps.json, bundles/, data/ (containers), staging/

// mediaFolders are made in a new device's AFC root (pmd3's device tests
// find the first three in a real root listing; every host stages packages
// in the fourth).
var mediaFolders = []string{"DCIM", "Downloads", "Books", "PublicStaging", "iTunes_Control", "Photos"}

// systemApps are listed as ApplicationType System (SIM: a few of the
// apps every iPhone has).
func systemApps(p Profile) []instproxy.SystemApp {
	v := p.Name
	return []instproxy.SystemApp{
		{BundleID: "com.apple.mobilesafari", Name: "MobileSafari", Version: "8620.1.16", ShortVersion: v},
		{BundleID: "com.apple.Preferences", Name: "Preferences", Version: "1", ShortVersion: v},
		{BundleID: "com.apple.camera", Name: "Camera", Version: "1", ShortVersion: v},
		{BundleID: "com.apple.mobileslideshow", Name: "MobileSlideShow", Version: "1", ShortVersion: v},
	}
}

// appStore is one device's files and apps and the servers over them.
type appStore struct {
	media string
	tmp   string // the folder to remove at close, for a device without state
	reg   *instproxy.Registry
	afc   *afc.Server
	inst  *instproxy.Server
	zip   *zipconduit.Server
	ha    *housearrest.Server
}

func newAppStore(d *Device) (*appStore, error) {
	s := &appStore{}
	base := string(d.state)
	if base == "" {
		tmp, err := os.MkdirTemp("", "iosmux-sim-files-")
		if err != nil {
			return nil, fmt.Errorf("sim: files: %w", err)
		}
		s.tmp, base = tmp, tmp
	}
	s.media = filepath.Join(base, "Media")
	for _, f := range mediaFolders {
		if err := os.MkdirAll(filepath.Join(s.media, f), 0o755); err != nil {
			s.close()
			return nil, fmt.Errorf("sim: files: %w", err)
		}
	}
	var err error
	if s.reg, err = instproxy.NewRegistry(instproxy.RegistryConfig{Dir: filepath.Join(base, "apps"), System: systemApps(d.prof)}); err != nil {
		s.close()
		return nil, fmt.Errorf("sim: apps: %w", err)
	}
	model := d.id.ProductType
	afcInfo := func() afc.DeviceInfo {
		// SIM: a 128 GB phone, half full.
		return afc.DeviceInfo{Model: model, TotalBytes: 128_000_000_000, FreeBytes: 64_000_000_000, BlockSize: 4096}
	}
	if s.afc, err = afc.NewServer(afc.ServerConfig{Root: s.media, DeviceInfo: afcInfo, Logger: d.log}); err != nil {
		s.close()
		return nil, err
	}
	if s.inst, err = instproxy.NewServer(instproxy.ServerConfig{Registry: s.reg, Media: s.media, Logger: d.log}); err != nil {
		s.close()
		return nil, err
	}
	reg := s.reg
	if s.zip, err = zipconduit.NewServer(zipconduit.ServerConfig{NewStaging: reg.NewStaging, Logger: d.log,
		Install: func(ctx context.Context, dir string, progress func(int, string)) error {
			_, err := reg.InstallStaged(ctx, dir, progress)
			return err
		}}); err != nil {
		s.close()
		return nil, err
	}
	s.ha = &housearrest.Server{Apps: registryApps{reg}, AFC: func(ctx context.Context, conn net.Conn, root, only string) {
		srv, err := afc.NewServer(afc.ServerConfig{Root: root, Only: only, DeviceInfo: afcInfo, Logger: d.log})
		if err == nil {
			srv.Serve(ctx, conn)
		}
	}}
	return s, nil
}

func (s *appStore) close() {
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// registryApps answers house_arrest's look-ups from the registry.
type registryApps struct{ reg *instproxy.Registry }

func (r registryApps) LookupApp(id string) (housearrest.App, bool) {
	rec, ok := r.reg.Lookup(id)
	if !ok {
		return housearrest.App{}, false
	}
	return housearrest.App{Container: r.reg.ContainerDir(rec), System: rec.System, Developer: rec.Developer, FileSharing: rec.FileSharing()}, true
}

// services are the store's services, each registered once for RSD (a
// shim: RSDCheckin first) and for lockdownd under its lockdown name.
func (s *appStore) services() []DeviceService {
	svc := func(r reach.Names, h reach.Handler) DeviceService {
		return DeviceService{Name: r.RSD, Lockdown: r.Lockdown, Entitlement: LockdownTrusted, Handler: h}
	}
	return []DeviceService{
		svc(reach.AFC, func(ctx context.Context, c net.Conn) { s.afc.Serve(ctx, c) }),
		svc(reach.HouseArrest, s.ha.Serve),
		svc(reach.InstallationProxy, s.inst.Serve),
		svc(reach.ZipConduit, s.zip.Serve),
	}
}

// Media is the host folder of the device's AFC root.
func (d *Device) Media() string { return d.files.media }

// Apps is the device's installed-app registry.
func (d *Device) Apps() *instproxy.Registry { return d.files.reg }
