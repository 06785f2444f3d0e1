package backend

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/iosmux/iosmux/mercury"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/reach"
)

// developerFacts is what the device's image mounter says: whether the
// personalized DDI is mounted (ddiKnown false when that could not be read)
// and the Developer Mode status (mercury.DeveloperModeUnknown likewise).
type developerFacts struct {
	ddiKnown, ddiMounted bool
	mode                 mercury.DeveloperMode
}

// developerFacts asks the device's image mounter through the backend's own
// RSD (loopback, its forwarders), so the device keeps its one RSD peer:
// LookupImage/CopyDevices for the DDI's mount state,
// QueryDeveloperModeStatus for Developer Mode (services.md §3.1; amfi
// arms and accepts it, the mounter reports it). udid must be the device
// the backend serves. Reading the backend's RSD also re-reads the
// device's Handshake, so services a mount added reach the facts.
func (b *Backend) developerFacts(ctx context.Context, udid string) (developerFacts, error) {
	var out developerFacts
	r, err := reach.NewRSD(ctx, nil, b.selfAddr(), reach.RSDConfig{HostUUID: b.cfg.HostUUID, Label: b.cfg.HostName, Logger: b.log})
	if err != nil {
		return out, err
	}
	if got := r.UDID(); got != udid {
		return out, fmt.Errorf("backend: serving %s, not %s", got, udid)
	}
	st, lerr := mounter.List(ctx, r)
	if lerr == nil {
		out.ddiKnown, out.ddiMounted = true, st.Mounted()
	}
	on, merr := mounter.DeveloperModeStatus(ctx, r)
	switch {
	case merr != nil:
	case on:
		out.mode = mercury.DeveloperModeEnabled
	default:
		out.mode = mercury.DeveloperModeDisabled
	}
	if lerr != nil {
		return out, lerr
	}
	return out, merr
}

// selfAddr is the backend's RSD as this process reaches it: loopback for
// a wildcard listener, so Config.AllowClients never refuses it.
func (b *Backend) selfAddr() netip.AddrPort {
	h := b.host
	switch {
	case !h.IsUnspecified():
	case h.Is4():
		h = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		h = netip.IPv6Loopback()
	}
	return netip.AddrPortFrom(h, b.rsdPort)
}
