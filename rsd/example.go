package rsd

import "github.com/iosmux/iosmux/xpc"

// ExampleUUID is the device UUID of the published example Handshake
// (rsd.md §5).
const ExampleUUID = "1d701c76-cf8e-45c7-a6c9-d794ee85411c"

// ExampleProperties returns the device Properties of the example Handshake
// published in pymobiledevice3's misc/RemoteXPC.md (rsd.md §5: an iOS
// 17.0 beta iPhone 14 Pro Max on the untrusted RSD port), with the wire
// types of vector 10: device integers int64, RemoteXPCVersionFlags uint64,
// BootSessionUUID a uuid. It is a fresh copy each call.
func ExampleProperties() *xpc.Dict {
	return xpc.NewDict(
		"AppleInternal", xpc.Bool(false),
		"BoardId", xpc.Int64(14),
		"BootSessionUUID", mustUUID("a4ba4745-5925-4e45-93ab-46ec91880c91"),
		"BuildVersion", xpc.String("21A5277j"),
		"CPUArchitecture", xpc.String("arm64e"),
		"CertificateProductionStatus", xpc.Bool(true),
		"CertificateSecurityMode", xpc.Bool(true),
		"ChipID", xpc.Int64(33056),
		"DeviceClass", xpc.String("iPhone"),
		"DeviceColor", xpc.String("1"),
		"DeviceEnclosureColor", xpc.String("1"),
		"DeviceSupportsLockdown", xpc.Bool(true),
		"EffectiveProductionStatusAp", xpc.Bool(true),
		"EffectiveProductionStatusSEP", xpc.Bool(true),
		"EffectiveSecurityModeAp", xpc.Bool(true),
		"EffectiveSecurityModeSEP", xpc.Bool(true),
		"EthernetMacAddress", xpc.String("aa:bb:cc:dd:ee:ff"),
		"HWModel", xpc.String("D74AP"),
		"HardwarePlatform", xpc.String("t8120"),
		"HasSEP", xpc.Bool(true),
		"HumanReadableProductVersionString", xpc.String("17.0"),
		"Image4CryptoHashMethod", xpc.String("sha2-384"),
		"Image4Supported", xpc.Bool(true),
		"IsUIBuild", xpc.Bool(true),
		"IsVirtualDevice", xpc.Bool(false),
		"MobileDeviceMinimumVersion", xpc.String("1600"),
		"ModelNumber", xpc.String("MQ9U3"),
		"OSInstallEnvironment", xpc.Bool(false),
		"OSVersion", xpc.String("17.0"),
		"ProductName", xpc.String("iPhone OS"),
		"ProductType", xpc.String("iPhone15,3"),
		"RegionCode", xpc.String("HX"),
		"RegionInfo", xpc.String("HX/A"),
		"ReleaseType", xpc.String("Beta"),
		"RemoteXPCVersionFlags", xpc.Uint64(72057594037927942),
		"RestoreLongVersion", xpc.String("21.1.277.5.10,0"),
		"SecurityDomain", xpc.Int64(1),
		"SensitivePropertiesVisible", xpc.Bool(true),
		"SerialNumber", xpc.String("AABBCCDDEEFF"),
		"SigningFuse", xpc.Bool(true),
		"StoreDemoMode", xpc.Bool(false),
		"SupplementalBuildVersion", xpc.String("21A5277j"),
		"ThinningProductType", xpc.String("iPhone15,3"),
		"UniqueChipID", xpc.Int64(111111),
		"UniqueDeviceID", xpc.String("222222222"),
	)
}

// ExampleServices returns the service table of the same example.
func ExampleServices() []Service {
	return []Service{
		{Name: "com.apple.fusion.remote.service", Port: 52286, Entitlement: "com.apple.fusion.remote.service", Properties: xpc.NewDict("ServiceVersion", xpc.Int64(1), "UsesRemoteXPC", xpc.Bool(true))},
		{Name: "com.apple.gputools.remote.agent", Port: 52292, Entitlement: "com.apple.private.gputoolstransportd", Properties: xpc.NewDict("ServiceVersion", xpc.Int64(1), "UsesRemoteXPC", xpc.Bool(true))},
		{Name: "com.apple.internal.dt.coredevice.untrusted.tunnelservice", Port: 52291, Entitlement: "com.apple.dt.coredevice.tunnelservice.client", Properties: xpc.NewDict("ServiceVersion", xpc.Int64(2), "UsesRemoteXPC", xpc.Bool(true))},
		{Name: "com.apple.mobile.insecure_notification_proxy.remote", Port: 52289, Entitlement: "com.apple.mobile.insecure_notification_proxy.remote", Properties: xpc.NewDict("ServiceVersion", xpc.Int64(1), "UsesRemoteXPC", xpc.Bool(true))},
		{Name: "com.apple.mobile.insecure_notification_proxy.shim.remote", Port: 52287, Entitlement: "com.apple.mobile.lockdown.remote.untrusted", Properties: nil},
		{Name: "com.apple.mobile.lockdown.remote.untrusted", Port: 52288, Entitlement: "com.apple.mobile.lockdown.remote.untrusted", Properties: xpc.NewDict("ServiceVersion", xpc.Int64(1), "UsesRemoteXPC", xpc.Bool(true))},
		{Name: "com.apple.osanalytics.logTransfer", Port: 52290, Entitlement: "com.apple.ReportCrash.antenna-access", Properties: xpc.NewDict("UsesRemoteXPC", xpc.Bool(true))},
	}
}

func mustUUID(s string) xpc.UUID {
	u, err := xpc.ParseUUID(s)
	if err != nil {
		panic(err)
	}
	return u
}
