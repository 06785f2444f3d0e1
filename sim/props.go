package sim

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// rsdProperties builds the RSD Handshake Properties of one boot: the
// published example's keys and wire types (rsd.md §2.3, §5) with
// this device's identity, release and boot session. Release builds carry no
// ReleaseType (go-ios's iOS 17.0.3 example).
func rsdProperties(id Identity, p Profile, bootSession xpc.UUID) *xpc.Dict {
	props := rsd.ExampleProperties()
	props.Delete("ReleaseType")
	props.Set("BoardId", xpc.Int64(id.BoardID))
	props.Set("BootSessionUUID", bootSession)
	props.Set("BuildVersion", xpc.String(p.BuildVersion))
	props.Set("ChipID", xpc.Int64(id.ChipID))
	props.Set("EthernetMacAddress", xpc.String(id.EthernetMAC))
	props.Set("HWModel", xpc.String(id.HWModel))
	props.Set("HardwarePlatform", xpc.String(id.Platform))
	props.Set("HumanReadableProductVersionString", xpc.String(p.OSVersion))
	props.Set("ModelNumber", xpc.String(id.ModelNumber))
	props.Set("OSVersion", xpc.String(p.OSVersion))
	props.Set("ProductType", xpc.String(id.ProductType))
	props.Set("RegionCode", xpc.String(regionCode(id.RegionInfo)))
	props.Set("RegionInfo", xpc.String(id.RegionInfo))
	props.Set("RestoreLongVersion", xpc.String(restoreLongVersion(p.BuildVersion)))
	props.Set("SerialNumber", xpc.String(id.SerialNumber))
	props.Set("SupplementalBuildVersion", xpc.String(p.BuildVersion))
	props.Set("ThinningProductType", xpc.String(id.ProductType))
	props.Set("UniqueChipID", xpc.Int64(int64(id.ECID)))
	props.Set("UniqueDeviceID", xpc.String(id.UDID))
	return props
}

func regionCode(info string) string {
	for i, c := range info {
		if c == '/' {
			return info[:i]
		}
	}
	return info
}

var buildRE = regexp.MustCompile(`^(\d+)([A-Z])(\d+)$`)

// restoreLongVersion renders a build the way the examples pair them
// ("21A360" → "21.1.360.0.0,0"); beta suffixes are not produced here.
func restoreLongVersion(build string) string {
	m := buildRE.FindStringSubmatch(build)
	if m == nil {
		return build
	}
	n, _ := strconv.Atoi(m[3])
	return fmt.Sprintf("%s.%d.%d.0.0,0", m[1], m[2][0]-'A'+1, n)
}

// lockdownValues is the top-level domain lockdownd serves (lockdown.md
// §8): every key a client of this phase reads, with lockdown's plist types
// (integers are unsigned).
func lockdownValues(id Identity, p Profile) map[string]any {
	return map[string]any{
		"ActivationState":                   "Activated",
		"BluetoothAddress":                  id.BluetoothMAC,
		"BoardId":                           uint64(id.BoardID),
		"BuildVersion":                      p.BuildVersion,
		"CPUArchitecture":                   "arm64e",
		"ChipID":                            uint64(id.ChipID),
		"DeviceClass":                       "iPhone",
		"DeviceColor":                       "1",
		"DeviceName":                        id.DeviceName,
		"EthernetAddress":                   id.EthernetMAC,
		"HardwareModel":                     id.HWModel,
		"HardwarePlatform":                  id.Platform,
		"HumanReadableProductVersionString": p.OSVersion,
		"ModelNumber":                       id.ModelNumber,
		"PasswordProtected":                 false,
		"ProductName":                       "iPhone OS",
		"ProductType":                       id.ProductType,
		"ProductVersion":                    p.OSVersion,
		"ProtocolVersion":                   "2",
		"RegionInfo":                        id.RegionInfo,
		"SerialNumber":                      id.SerialNumber,
		"SupportedDeviceFamilies":           []any{uint64(1)},
		"TimeZone":                          "UTC",
		"UniqueChipID":                      id.ECID,
		"UniqueDeviceID":                    id.UDID,
		"WiFiAddress":                       id.WiFiMAC,
	}
}

// lockdownDomains are the non-top-level domains clients of this phase read
// (Developer Mode status through amfi's domain, lockdown.md §2; the
// developer state publishes its real value at start and on every change).
func lockdownDomains() map[string]map[string]any {
	return map[string]map[string]any{
		"com.apple.security.mac.amfi": {"DeveloperModeStatus": false},
		"com.apple.mobile.battery":    {"BatteryCurrentCapacity": uint64(100), "BatteryIsCharging": false},
	}
}
