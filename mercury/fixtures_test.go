package mercury

import (
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// Fixture values of the golden cases (not real device data).
var (
	uuidD  = mustUUID("6f1d0e8a-3b2c-4d5e-8f90-a1b2c3d4e5f6")
	udidF  = "00008110-000000000000001E"
	serial = "FIXTURESERIAL"
	invF   = "0B2E8F2A-6C0D-4E3B-9A51-7E4C2D19A0F1"
)

func mustUUID(s string) xpc.UUID {
	u, err := xpc.ParseUUID(s)
	if err != nil {
		panic(err)
	}
	return u
}

func ptr[T any](v T) *T { return &v }

func coreDeviceVersion() *xpc.Dict {
	return xpc.NewDict("components", xpc.Array{xpc.Uint64(629), xpc.Uint64(3)},
		"originalComponentsCount", xpc.Int64(2), "stringValue", xpc.String("629.3"))
}

// request is REQ_PAIR with another action id and input.
func request(action string, input *xpc.Dict) *xpc.Dict {
	if input == nil {
		input = xpc.NewDict()
	}
	return xpc.NewDict(
		KeyActionIdentifier, xpc.String(action),
		KeyInvocationIdentifier, xpc.String(invF),
		KeyDeviceIdentifier, xpc.String("6F1D0E8A-3B2C-4D5E-8F90-A1B2C3D4E5F6"),
		KeyCoreDeviceVersion, coreDeviceVersion(),
		KeyInput, input,
	)
}

func reqPair() *xpc.Dict { return request(ActionPrefix+"pair", nil) }

func handshakeAll() *xpc.Dict {
	return xpc.NewDict(
		"ProductType", xpc.String("iPhone14,6"),
		"OSVersion", xpc.String("26.4.2"),
		"BuildVersion", xpc.String("23E261"),
		"UniqueDeviceID", xpc.String(udidF),
		"SerialNumber", xpc.String(serial),
		"HardwarePlatform", xpc.String("t8110"),
		"UniqueChipID", xpc.Int64(30),
	)
}

// factsAll is FACTS_ALL: every fact true.
func factsAll() *Facts {
	return &Facts{
		DeviceUUID:         uuidD,
		ServiceIdentifier:  UUIDIdentifier(uuidD, ""),
		Handshake:          handshakeAll(),
		DeviceName:         ptr("iPhone (iosmux)"),
		Tunnel:             TunnelUp,
		PairRecord:         PairVerified,
		DDI:                DDIState{Known: true, Mounted: true, ServicesAdvertised: true},
		DeveloperMode:      DeveloperModeEnabled,
		PowerAssertion:     true,
		ExtendedInfoLoaded: true,
		Tags:               []string{},
		Monotonic:          1,
	}
}

// iter17Output is the DeviceConnectionChangeResult CDS accepted, written
// out by hand (not by the builders) so that G01 compares two independent
// constructions.
func iter17Output() *xpc.Dict {
	info := xpc.NewDict(
		"identifier", uuidD,
		"serviceDeviceIdentifier", xpc.NewDict("uuid", xpc.NewDict("identifier", uuidD, "domain", xpc.String(""))),
		"pairingState", xpc.String("paired"),
		"preparednessState", xpc.Int64(15),
		"state", xpc.String("connected"),
		"visibilityClass", xpc.String("default"),
		"isMobileDeviceOnly", xpc.Bool(true),
		"areDeveloperDiskImageServicesAvailable", xpc.Bool(true),
		"potentialHostnames", xpc.Array{},
		"tags", xpc.Array{},
		"defaultUserCredentials", xpc.Array{},
		"providerSpecificValues", xpc.NewDict(),
		"additionalMetadata", xpc.NewDict(),
		"productType", xpc.String("iPhone14,6"),
		"osVersion", xpc.String("26.4.2"),
		"osBuild", xpc.String("23E261"),
		"udid", xpc.String(udidF),
		"serialNumber", xpc.String(serial),
		"hardwareModel", xpc.String("t8110"),
		"ecid", xpc.Uint64(30),
		"name", xpc.String("iPhone (iosmux)"),
		"reality", xpc.String("physical"),
	)
	return xpc.NewDict(
		"outcome", xpc.NewDict("success", xpc.NewDict()),
		"updatedSnapshot", xpc.NewDict(
			"state", xpc.NewDict("connected", xpc.NewDict()),
			"capabilityImplementations", xpc.Array{},
			"deviceInfo", info,
			"monotonicIdentifier", xpc.Int64(1),
		),
	)
}

// iter17Reply is the whole accepted reply to REQ_PAIR.
func iter17Reply() *xpc.Dict {
	return xpc.NewDict(
		KeyActionIdentifier, xpc.String(ActionPrefix+"pair"),
		KeyInvocationIdentifier, xpc.String(invF),
		KeyDeviceIdentifier, xpc.String("6F1D0E8A-3B2C-4D5E-8F90-A1B2C3D4E5F6"),
		KeyCoreDeviceVersion, coreDeviceVersion(),
		KeyOutput, iter17Output(),
	)
}

// at walks dictionaries by key.
func at(t testing.TB, d *xpc.Dict, keys ...string) xpc.Value {
	t.Helper()
	var v xpc.Value = d
	for _, k := range keys {
		dd, ok := v.(*xpc.Dict)
		if !ok {
			t.Fatalf("at %v: %s is not a dictionary", keys, k)
		}
		v = dd.Get(k)
	}
	return v
}

func dictAt(t testing.TB, d *xpc.Dict, keys ...string) *xpc.Dict {
	t.Helper()
	v, ok := at(t, d, keys...).(*xpc.Dict)
	if !ok {
		t.Fatalf("%v is not a dictionary", keys)
	}
	return v
}

func encode(t testing.TB, v xpc.Value) []byte {
	t.Helper()
	b, err := xpc.AppendValue(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
