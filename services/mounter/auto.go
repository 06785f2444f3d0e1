package mounter

import (
	"context"

	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/reach"
)

// Source says where AutoMount takes the DDI from.
type Source struct {
	// Dir is a DDI folder the user named (Xcode's iOS_DDI, a Restore
	// folder, pymobiledevice3's cache); used alone when set.
	Dir string
	// Locations are searched when Dir is empty (ddi.Locations).
	Locations []string
	// Download, if set, fetches a DDI into its cache when none is found,
	// or always when Always is set.
	Download *ddi.DownloadConfig
	Always   bool
}

// Bundle finds (or downloads) the DDI.
func (s Source) Bundle(ctx context.Context) (*ddi.Bundle, error) {
	if s.Dir != "" {
		return ddi.Open(s.Dir)
	}
	if s.Download != nil && s.Always {
		return ddi.Download(ctx, *s.Download)
	}
	b, err := ddi.Find(s.Locations)
	if err == nil || s.Download == nil {
		return b, err
	}
	return ddi.Download(ctx, *s.Download)
}

// AutoMount finds or downloads the DDI and mounts it (Mount), unless one
// is mounted already, in which case it looks for no DDI at all.
func AutoMount(ctx context.Context, o reach.Opener, src Source, cfg MountConfig) (*MountResult, error) {
	st, err := List(ctx, o)
	if err != nil {
		return nil, err
	}
	if st.Mounted() {
		return &MountResult{UDID: o.UDID(), AlreadyMounted: true}, nil
	}
	b, err := src.Bundle(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Bundle = b
	return Mount(ctx, o, cfg)
}
