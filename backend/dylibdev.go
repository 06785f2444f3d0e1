package backend

import (
	"context"
	"fmt"

	"github.com/iosmux/iosmux/mercury"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/reach"
)

// MounterFacts is a DeveloperSource that asks the device's image mounter,
// through the backend's own RSD (loopback, its forwarders), so the device
// keeps its one RSD peer: LookupImage/CopyDevices for the DDI's mount
// state, QueryDeveloperModeStatus for Developer Mode. A device whose
// mounter cannot be reached leaves both unknown.
type MounterFacts struct {
	b *Backend
}

var _ DeveloperSource = MounterFacts{}

// MounterFacts returns the backend's DeveloperSource over the image
// mounter.
func (b *Backend) MounterFacts() MounterFacts { return MounterFacts{b: b} }

// opener reads the backend's own Handshake; udid must be the device it
// serves now.
func (m MounterFacts) opener(ctx context.Context, udid string) (reach.Opener, error) {
	r, err := reach.NewRSD(ctx, nil, m.b.Addr(), reach.RSDConfig{HostUUID: m.b.cfg.HostUUID, Label: m.b.cfg.HostName, Logger: m.b.log})
	if err != nil {
		return nil, err
	}
	if got := r.UDID(); got != udid {
		return nil, fmt.Errorf("backend: serving %s, not %s", got, udid)
	}
	return r, nil
}

// DDIMounted implements DeveloperSource.
func (m MounterFacts) DDIMounted(ctx context.Context, udid string) (bool, error) {
	o, err := m.opener(ctx, udid)
	if err != nil {
		return false, err
	}
	st, err := mounter.List(ctx, o)
	if err != nil {
		return false, err
	}
	return st.Mounted(), nil
}

// DeveloperMode implements DeveloperSource.
func (m MounterFacts) DeveloperMode(ctx context.Context, udid string) (mercury.DeveloperMode, error) {
	o, err := m.opener(ctx, udid)
	if err != nil {
		return mercury.DeveloperModeUnknown, err
	}
	on, err := mounter.DeveloperModeStatus(ctx, o)
	if err != nil {
		return mercury.DeveloperModeUnknown, err
	}
	if on {
		return mercury.DeveloperModeEnabled, nil
	}
	return mercury.DeveloperModeDisabled, nil
}
