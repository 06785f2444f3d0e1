package tunneld

import (
	"context"
	"net/netip"
	"time"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
)

// AdvertiseRequest is an established tunnel as Config.Advertise sees it.
type AdvertiseRequest struct {
	// UDID is the identity the tunnel's handshake reported.
	UDID string
	// RSD is the device's trusted RSD inside the tunnel.
	RSD netip.AddrPort
	// Dial opens TCP connections through the tunnel (kernel routing or
	// the tunnel's userspace stack).
	Dial utun.DialFunc
	// Done is closed when the tunnel has ended, however it ended.
	Done <-chan struct{}
}

// Advert is what the APIs list for a tunnel in place of the device's own
// RSD: an RSD served elsewhere (iosmux's backend) that clients reach
// without the tunnel, so the entry is never listed as a userspace one.
type Advert struct {
	// RSD is listed as the tunnel's address and RSD port.
	RSD netip.AddrPort
	// Services returns the catalog to list with it (appium's services);
	// it is called on every listing, so it may follow the device. nil
	// lists none.
	Services func() []rsdapi.Service
	// Refresh, if set, makes the advertised RSD read the device's catalog
	// again (refresh-services: after a developer disk image is mounted
	// its services appear only in a new RSD session).
	Refresh func(context.Context) error
}

// readServices runs one RSD discovery session at addr through dial and
// returns the device's catalog. It presents hostUUID: iOS 27.2 keeps one
// RSD peer per tunnel and closes every advertised port when a peer
// presents a UUID other than the last one (rsd.md §3), so every
// session this host opens — ours, the backend's, pair and rsd-info's —
// must carry the same stable identity.
func readServices(ctx context.Context, dial utun.DialFunc, addr string, hostUUID xpc.UUID) ([]rsdapi.Service, error) {
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: hostUUID, XPC: &xpc.Config{Name: "rsd " + addr}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	svcs := make([]rsdapi.Service, 0, len(c.Handshake.Services))
	for _, s := range c.Handshake.Services {
		svcs = append(svcs, rsdapi.Service{Name: s.Name, Port: s.Port})
	}
	return svcs, nil
}

// advertise asks Config.Advertise what to list for a tunnel that is up.
func (e *establisher) advertise(ctx context.Context, udid string, p netip.AddrPort, h *hostTUN, done <-chan struct{}, meta *tunnelMeta) error {
	a, err := e.advertiseFn(ctx, AdvertiseRequest{UDID: udid, RSD: p, Dial: h.dial, Done: done})
	if err != nil {
		return err
	}
	meta.advert, meta.catalogAt = &a, time.Now()
	return nil
}
