package mercury

import "github.com/iosmux/iosmux/xpc"

// The CoreDevice types whose encodings are known, with the evidence in
// docs/protocols/coredevice-schema.md. Struct fields are in the order of
// the reply CDS accepted; types whose encoding was never captured are
// FormUnknown, so nothing of them can be built or judged.

// Swift scalars (F10–F13).
var (
	Int64Type  = scalar("Swift.Int64", xpc.KindInt64)
	UInt64Type = scalar("Swift.UInt64", xpc.KindUint64)
	BoolType   = scalar("Swift.Bool", xpc.KindBool)
	StringType = scalar("Swift.String", xpc.KindString)
	DoubleType = scalar("Swift.Double", xpc.KindDouble)
	FloatType  = &Type{Name: "Swift.Float", Form: FormScalar, Kind: xpc.KindDouble, Float32: true}
	UUIDType   = scalar("Foundation.UUID", xpc.KindUUID)
)

// Referenced types never captured (coredevice-schema.md §3).
var (
	DeviceCapabilityImplementationType     = unknown("CoreDevice.DeviceCapabilityImplementation")
	DefaultUserCredentialType              = unknown("CoreDevice.DefaultUserCredential")
	CodableValueType                       = unknown("CoreDevice.CodableValue")
	NSErrorContainerType                   = unknown("Mercury.NSErrorContainer")
	UsageAssertionInformationType          = unknown("CoreDevice.UsageAssertionInformation")
	DarwinNotificationPostActionResultType = unknown("CoreDevice.DarwinNotificationPostActionResult")
	EnableDeveloperDiskImageResultType     = unknown("CoreDevice.EnableDeveloperDiskImageResult")
	DDIMetadataType                        = unknown("CoreDevice.DDIMetadata")
	UpdateHostDDIsResultType               = unknown("CoreDevice.UpdateHostDDIsResult")
	RemoveHostDDIsResultType               = unknown("CoreDevice.RemoveHostDDIsResult")
)

// VoidType is the Output of a _VoidBox action: an empty dictionary.
var VoidType = &Type{Name: "Swift.Void", Form: FormVoid}

// OutcomeType is DeviceConnectionChangeResult.Outcome: auto-Codable, cases
// success and failure(Mercury.NSErrorContainer), whose payload encoding is
// unknown.
var OutcomeType = enumOf("CoreDevice.DeviceConnectionChangeResult.Outcome", "Outcome.CodingKeys",
	Case{"success", noPayload("Outcome", "success")},
	Case{"failure", NSErrorContainerType},
)

// SnapshotStateType is the enum at DeviceStateSnapshot.state, distinct from
// DeviceInfo.state's; its Swift name was not recovered and only the case
// connected is known.
var SnapshotStateType = enumOf("CoreDevice.DeviceStateSnapshot.State", "DeviceStateSnapshot.State.CodingKeys",
	Case{"connected", noPayload("State", "connected")},
)

// DeviceIdentifierType is CoreDevice.DeviceIdentifier, custom Codable with
// named keys per case: uuid(identifier, domain); ecid's keys are unknown.
var DeviceIdentifierType = enumOf("CoreDevice.DeviceIdentifier", "DeviceIdentifier.CodingKeys",
	Case{"uuid", structOf("UuidCodingKeys", req("identifier", UUIDType), req("domain", StringType))},
	Case{"ecid", unknown("EcidCodingKeys")},
)

// String-raw-value enums and the OptionSet.
var (
	PairingStateType = rawEnum("CoreDevice.PairingState",
		RawValue{"paired", true}, RawValue{"pairingInProgress", false}, RawValue{"unpaired", false})
	DeviceStateType           = rawEnum("CoreDeviceProtocols.DeviceState", RawValue{"connected", true})
	DeviceVisibilityClassType = rawEnum("CoreDevice.DeviceVisibilityClass", RawValue{"default", true})
	DeviceRealityType         = rawEnum("CoreDevice.DeviceReality", RawValue{"physical", true})
	DevicePreparednessType    = &Type{Name: "CoreDevice.DevicePreparedness", Form: FormOptionSet}
)

// DeviceInfoType is CoreDeviceProtocols.DeviceInfo.
var DeviceInfoType = structOf("CoreDeviceProtocols.DeviceInfo",
	req("identifier", UUIDType),
	req("serviceDeviceIdentifier", DeviceIdentifierType),
	req("pairingState", PairingStateType),
	req("preparednessState", DevicePreparednessType),
	req("state", DeviceStateType),
	req("visibilityClass", DeviceVisibilityClassType),
	req("isMobileDeviceOnly", BoolType),
	req("areDeveloperDiskImageServicesAvailable", BoolType),
	req("potentialHostnames", arrayOf(StringType)),
	req("tags", arrayOf(StringType)),
	req("defaultUserCredentials", setOf(DefaultUserCredentialType)),
	req("providerSpecificValues", mapOf(StringType)),
	req("additionalMetadata", mapOf(CodableValueType)),
	opt("productType", StringType),
	opt("osVersion", StringType),
	opt("osBuild", StringType),
	opt("udid", StringType),
	opt("serialNumber", StringType),
	opt("hardwareModel", StringType),
	opt("ecid", UInt64Type),
	opt("name", StringType),
	opt("reality", DeviceRealityType),
)

// DeviceStateSnapshotType is CoreDevice.DeviceStateSnapshot.
var DeviceStateSnapshotType = structOf("CoreDevice.DeviceStateSnapshot",
	req("state", SnapshotStateType),
	req("capabilityImplementations", arrayOf(DeviceCapabilityImplementationType)),
	req("deviceInfo", DeviceInfoType),
	req("monotonicIdentifier", Int64Type),
)

// DeviceConnectionChangeResultType is PairActionDeclaration.Output.
var DeviceConnectionChangeResultType = structOf("CoreDevice.DeviceConnectionChangeResult",
	req("outcome", OutcomeType),
	req("updatedSnapshot", DeviceStateSnapshotType),
)

// GetTrainNameOutputType is GetTrainNameActionDeclaration.Output, assumed
// auto-Codable from its symbols.
var GetTrainNameOutputType = structOf("CoreDevice.GetTrainNameActionDeclaration.Output", req("name", StringType))
