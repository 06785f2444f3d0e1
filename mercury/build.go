package mercury

import (
	"errors"
	"fmt"

	"github.com/iosmux/iosmux/xpc"
)

// DeviceInfo builds CoreDeviceProtocols.DeviceInfo from f
// (docs/protocols/coredevice-schema.md §5). notes explain
// fields left out for bad input (a negative ECID); the caller logs them.
// Without a live tunnel there is no honest DeviceInfo.state, and without a
// known DDI state no honest areDeveloperDiskImageServicesAvailable: both are
// ErrNoHonestState.
func DeviceInfo(f *Facts) (info *xpc.Dict, notes []string, err error) {
	if f.Tunnel != TunnelUp {
		return nil, nil, fmt.Errorf("%w: tunnel %v (the non-connected DeviceState raw value is unknown)", ErrNoHonestState, f.Tunnel)
	}
	if f.DeviceUUID.IsZero() {
		return nil, nil, fmt.Errorf("%w: no device UUID", ErrNoHonestState)
	}
	ddi, ok := DDIAvailable(f)
	if !ok {
		return nil, nil, fmt.Errorf("%w: DDI services advertised but the mount state is unknown", ErrNoHonestState)
	}
	sid, err := f.ServiceIdentifier.Value()
	if err != nil {
		return nil, nil, err
	}
	creds, err := SetOf(nil) // DefaultUserCredential's schema is unknown: only the empty set
	if err != nil {
		return nil, nil, err
	}
	tags := f.Tags
	if tags == nil {
		tags = []string{}
	}
	d := xpc.NewDict(
		"identifier", f.DeviceUUID,
		"serviceDeviceIdentifier", sid,
		"pairingState", RawEnum(PairingState(f)),
		"preparednessState", OptionSet(Preparedness(f)),
		"state", RawEnum("connected"),
		"visibilityClass", RawEnum("default"),
		"isMobileDeviceOnly", xpc.Bool(true),
		"areDeveloperDiskImageServicesAvailable", xpc.Bool(ddi),
		"potentialHostnames", xpc.Array{},
		"tags", Strings(tags),
		"defaultUserCredentials", creds,
		"providerSpecificValues", xpc.NewDict(),
		"additionalMetadata", xpc.NewDict(),
	)
	if p := f.Handshake; p != nil {
		for _, h := range handshakeFields {
			if s, ok := p.Get(h.prop).(xpc.String); ok {
				d.Set(h.field, s)
			}
		}
		ecid, note := handshakeECID(p)
		OptionalField(d, "ecid", ecid)
		if note != "" {
			notes = append(notes, note)
		}
	}
	switch {
	case f.Label != nil:
		d.Set("name", xpc.String(*f.Label))
	case f.DeviceName != nil:
		d.Set("name", xpc.String(*f.DeviceName))
	}
	d.Set("reality", RawEnum("physical"))
	if err := Validate(DeviceInfoType, d); err != nil {
		return nil, notes, fmt.Errorf("mercury: built DeviceInfo does not validate: %w", err)
	}
	return d, notes, nil
}

// DeviceStateSnapshot builds CoreDevice.DeviceStateSnapshot from f.
func DeviceStateSnapshot(f *Facts) (*xpc.Dict, []string, error) {
	info, notes, err := DeviceInfo(f)
	if err != nil {
		return nil, notes, err
	}
	// f.Tunnel is Up (DeviceInfo checked): the only known snapshot state.
	s := xpc.NewDict(
		"state", EnumCase("connected"),
		"capabilityImplementations", xpc.Array{},
		"deviceInfo", info,
		"monotonicIdentifier", xpc.Int64(f.Monotonic),
	)
	return s, notes, nil
}

// Outcome is DeviceConnectionChangeResult's outcome. Only success has a
// known encoding; a failure would need Mercury.NSErrorContainer's.
type Outcome uint8

const (
	OutcomeSuccess Outcome = iota
	OutcomeFailure
)

// DeviceConnectionChangeResult builds the Output of pair: the outcome and
// the snapshot after it. OutcomeFailure is ErrSchemaUnknown.
func DeviceConnectionChangeResult(o Outcome, f *Facts) (*xpc.Dict, []string, error) {
	if o != OutcomeSuccess {
		return nil, nil, errors.Join(ErrSchemaUnknown, errors.New("mercury: Outcome.failure needs Mercury.NSErrorContainer, never captured"))
	}
	snap, notes, err := DeviceStateSnapshot(f)
	if err != nil {
		return nil, notes, err
	}
	return xpc.NewDict("outcome", EnumCase("success"), "updatedSnapshot", snap), notes, nil
}
