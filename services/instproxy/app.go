package instproxy

// App is an app dictionary as the device sends it (Browse, Lookup): the
// keys of its Info.plist plus the device's own (ApplicationType, Path,
// Container, EnvironmentVariables, …). Values keep their plist types.
type App map[string]any

// Keys of an app dictionary the hosts read.
const (
	KeyBundleID             = "CFBundleIdentifier"
	KeyName                 = "CFBundleName"
	KeyDisplayName          = "CFBundleDisplayName"
	KeyVersion              = "CFBundleVersion"
	KeyShortVersion         = "CFBundleShortVersionString"
	KeyExecutable           = "CFBundleExecutable"
	KeyApplicationType      = "ApplicationType"
	KeyPath                 = "Path"
	KeyContainer            = "Container"
	KeyEnvironmentVariables = "EnvironmentVariables"
	KeyFileSharing          = "UIFileSharingEnabled"
	KeyMinimumOSVersion     = "MinimumOSVersion"
	KeyStaticDiskUsage      = "StaticDiskUsage"
	KeyDynamicDiskUsage     = "DynamicDiskUsage"
)

func (a App) str(k string) string { s, _ := a[k].(string); return s }

// BundleID is CFBundleIdentifier.
func (a App) BundleID() string { return a.str(KeyBundleID) }

// Name is CFBundleDisplayName, or CFBundleName.
func (a App) Name() string {
	if s := a.str(KeyDisplayName); s != "" {
		return s
	}
	return a.str(KeyName)
}

// Version is CFBundleVersion (the build number).
func (a App) Version() string { return a.str(KeyVersion) }

// ShortVersion is CFBundleShortVersionString (the marketing version).
func (a App) ShortVersion() string { return a.str(KeyShortVersion) }

// Type is ApplicationType: "User", "System", …
func (a App) Type() string { return a.str(KeyApplicationType) }

// Path is the bundle's path on the device.
func (a App) Path() string { return a.str(KeyPath) }

// FileSharing is UIFileSharingEnabled.
func (a App) FileSharing() bool { b, _ := a[KeyFileSharing].(bool); return b }
