package backend

import (
	"context"
	"errors"
)

// A device lists the services that come with a developer disk image only
// in RSD sessions opened after the mount (services.md §6); the backend's own session, opened before,
// would never learn of them. So every client RSD connection gets a
// Handshake read from the device after the connection arrived: concurrent
// connections share one re-read (the supervisor drains waiting requests
// into one), and a re-read that fails leaves the last view in place.
// Refresh does the same on request (tunneld's refresh-services).

// freshView re-reads the device's Handshake for a new client connection of
// v's boot and returns the view to serve it: the new one, or v when the
// re-read failed or the boot changed meanwhile (its connections are ending
// anyway).
func (b *Backend) freshView(v *view) *view {
	ctx, cancel := context.WithTimeout(v.boot.ctx, b.cfg.DiscoveryTimeout)
	defer cancel()
	b.requestRefresh(ctx, v.link)
	if nv := b.current(); nv != nil && nv.boot == v.boot {
		return nv
	}
	return v
}

// Refresh re-reads the device's Handshake now and returns once clients are
// served from it: after a developer disk image is mounted, its services
// get forwarders and appear in the backend's Handshake.
func (b *Backend) Refresh(ctx context.Context) error {
	v := b.current()
	if v == nil {
		return errors.New("backend: no device attached")
	}
	b.requestRefresh(ctx, v.link)
	return ctx.Err()
}
