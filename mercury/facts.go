package mercury

import (
	"fmt"
	"slices"

	"github.com/iosmux/iosmux/xpc"
)

// Facts is everything iosmux knows about one device, gathered before any
// reply is built (docs/protocols/coredevice-schema.md §5). Builders
// read nothing else. The zero value of each fact means "not known".
type Facts struct {
	// DeviceUUID is the device's CoreDevice identifier, assigned by iosmux
	// once per physical device and kept.
	DeviceUUID xpc.UUID
	// ServiceIdentifier is the DeviceIdentifier used to register the
	// device in CDS and in every reply.
	ServiceIdentifier DeviceIdentifier
	// Handshake is the Properties of the device's RSD Handshake, nil until
	// one has been read.
	Handshake *xpc.Dict
	// DeviceName is lockdown's DeviceName, nil when not read.
	DeviceName *string
	// Label, if not nil, is a configured name used verbatim instead of
	// DeviceName (the naming policy); nil means the device's own name or
	// none.
	Label *string

	Tunnel              TunnelState
	PairRecord          PairRecordState
	PairSetupInProgress bool
	DDI                 DDIState
	DeveloperMode       DeveloperMode
	// PowerAssertion: iosmux holds a power assertion on the device.
	PowerAssertion bool
	// ExtendedInfoLoaded: the handshake and the lockdown values iosmux
	// reads (DeviceName, DeveloperModeStatus) are all in.
	ExtendedInfoLoaded bool
	// Tags are the user tags Xcode set.
	Tags []string
	// UsageAssertions is the number of usage assertions iosmux granted
	// and has not seen released.
	UsageAssertions int
	// Monotonic is the snapshot counter (Counter keeps it).
	Monotonic int64
}

// TunnelState is the state of iosmux's tunnel to the device.
type TunnelState uint8

const (
	TunnelDown TunnelState = iota
	TunnelEstablishing
	// TunnelUp: the tunnel is established and the RSD Handshake was read.
	TunnelUp
)

func (s TunnelState) String() string {
	return [...]string{"down", "establishing", "up", "TunnelState(?)"}[min(int(s), 3)]
}

// PairRecordState is the host's pairing with the device.
type PairRecordState uint8

const (
	PairAbsent PairRecordState = iota
	// PairPresent: a record exists but was not verified with the device.
	PairPresent
	// PairVerified: the device accepted the pairing (pair-verify, or a
	// lockdown session under the record) for the current tunnel.
	PairVerified
)

func (s PairRecordState) String() string {
	return [...]string{"absent", "present", "verified", "PairRecordState(?)"}[min(int(s), 3)]
}

// DDIState is what is known of the developer disk image.
type DDIState struct {
	// Known: Mounted was read from the device's image mounter.
	Known   bool
	Mounted bool
	// ServicesAdvertised: the device's current RSD service list holds
	// services a DDI provides (DDIServices).
	ServicesAdvertised bool
}

// DeveloperMode is the device's Developer Mode status.
type DeveloperMode uint8

const (
	DeveloperModeUnknown DeveloperMode = iota
	DeveloperModeEnabled
	DeveloperModeDisabled
	// DeveloperModeNotRequired: iOS before 16 has no Developer Mode.
	DeveloperModeNotRequired
)

func (m DeveloperMode) String() string {
	return [...]string{"unknown", "enabled", "disabled", "not required", "DeveloperMode(?)"}[min(int(m), 4)]
}

// DDIServices are the RSD services a mounted developer disk image adds
// (listed only after a mount); any of them advertised counts as DDI services
// being advertised. Which services count is our choice, from the services
// references mark "after DDI mount".
var DDIServices = []string{
	"com.apple.coredevice.appservice",
	"com.apple.coredevice.openstdiosocket",
	"com.apple.internal.dt.remote.debugproxy",
}

// DDIServicesAdvertised reports whether any of DDIServices is in names.
func DDIServicesAdvertised(names []string) bool {
	for _, n := range names {
		if slices.Contains(DDIServices, n) {
			return true
		}
	}
	return false
}

// PairingState derives DeviceInfo.pairingState: verified pairing →
// "paired"; pair-setup running → "pairingInProgress"; otherwise
// "unpaired". The last two raw values were seen in Xcode and devicectl
// output, not on the wire.
func PairingState(f *Facts) string {
	switch {
	case f.PairRecord == PairVerified:
		return "paired"
	case f.PairSetupInProgress:
		return "pairingInProgress"
	}
	return "unpaired"
}

// DDIAvailable derives areDeveloperDiskImageServicesAvailable: false when
// the device advertises none of the DDI services (nothing to reach, whatever
// the mount state), else the mount state; ok is false when that state is
// not known.
func DDIAvailable(f *Facts) (available, ok bool) {
	switch {
	case !f.DDI.ServicesAdvertised:
		return false, true
	case !f.DDI.Known:
		return false, false
	}
	return f.DDI.Mounted, true
}

// The DevicePreparedness bits. Only the four names and "all four = 15" are
// known; which name owns which bit is UNCONFIRMED (listing order assumed):
// this table is the one place to change when it is measured.
const (
	PreparedPowerAssertionTaken          int64 = 1 << 0
	PreparedExtendedDeviceInfoLoaded     int64 = 1 << 1
	PreparedDeveloperDiskImageServices   int64 = 1 << 2
	PreparedDeveloperModeEnabledIfNeeded int64 = 1 << 3
)

// Preparedness derives DeviceInfo.preparednessState. A flag says a step is
// done; a step not known to be done is not claimed.
func Preparedness(f *Facts) int64 {
	var p int64
	if f.PowerAssertion {
		p |= PreparedPowerAssertionTaken
	}
	if f.ExtendedInfoLoaded {
		p |= PreparedExtendedDeviceInfoLoaded
	}
	if ok, known := DDIAvailable(f); ok && known {
		p |= PreparedDeveloperDiskImageServices
	}
	if f.DeveloperMode == DeveloperModeEnabled || f.DeveloperMode == DeveloperModeNotRequired {
		p |= PreparedDeveloperModeEnabledIfNeeded
	}
	return p
}

// handshakeFields are the DeviceInfo optionals read from the RSD Handshake
// Properties, in reply order.
var handshakeFields = []struct{ field, prop string }{
	{"productType", "ProductType"},
	{"osVersion", "OSVersion"},
	{"osBuild", "BuildVersion"},
	{"udid", "UniqueDeviceID"},
	{"serialNumber", "SerialNumber"},
	{"hardwareModel", "HardwarePlatform"},
}

// handshakeECID converts Properties.UniqueChipID (int64 on the wire; a
// uint64 is taken as is) to DeviceInfo.ecid's UInt64. A negative or
// mistyped value has no honest UInt64: it is left out with a note.
func handshakeECID(props *xpc.Dict) (xpc.Value, string) {
	switch v := props.Get("UniqueChipID").(type) {
	case nil:
		return nil, ""
	case xpc.Uint64:
		return v, ""
	case xpc.Int64:
		if v < 0 {
			return nil, fmt.Sprintf("UniqueChipID %d is negative; ecid left out", int64(v))
		}
		return xpc.Uint64(v), ""
	default:
		return nil, fmt.Sprintf("UniqueChipID is %v, not an integer; ecid left out", v.Kind())
	}
}
