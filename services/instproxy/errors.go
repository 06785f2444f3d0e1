package instproxy

import (
	"errors"
	"fmt"
)

// Error names a device sends (docs/protocols/instproxy.md §5; the list
// is libimobiledevice's table, src/installation_proxy.c).
const (
	ErrorApplicationVerificationFailed = "ApplicationVerificationFailed"
	ErrorPackageInspectionFailed       = "PackageInspectionFailed"
	ErrorPackageExtractionFailed       = "PackageExtractionFailed"
	ErrorMissingPackagePath            = "MissingPackagePath"
	ErrorMissingApplicationIdentifier  = "MissingApplicationIdentifier"
	ErrorMissingCommand                = "MissingCommand"
	ErrorUnknownCommand                = "UnknownCommand"
	ErrorAPIInternalError              = "APIInternalError"
	ErrorDeviceOSVersionTooLow         = "DeviceOSVersionTooLow"
	ErrorIncorrectArchitecture         = "IncorrectArchitecture"
	ErrorInstallProhibited             = "InstallProhibited"
	ErrorUninstallProhibited           = "UninstallProhibited"
)

// Sentinels, one per error name above; a *DeviceError answers errors.Is
// for the one its name matches.
var (
	ErrApplicationVerificationFailed = errors.New("instproxy: the app is not signed for this device")
	ErrPackageInspectionFailed       = errors.New("instproxy: the package is not an installable app")
	ErrPackageExtractionFailed       = errors.New("instproxy: the package could not be unpacked")
	ErrMissingPackagePath            = errors.New("instproxy: the package path is missing or names nothing")
	ErrMissingApplicationIdentifier  = errors.New("instproxy: no bundle id given")
	ErrMissingCommand                = errors.New("instproxy: request without a command")
	ErrUnknownCommand                = errors.New("instproxy: unknown command")
	ErrAPIInternalError              = errors.New("instproxy: internal error on the device")
	ErrDeviceOSVersionTooLow         = errors.New("instproxy: the app needs a newer iOS")
	ErrIncorrectArchitecture         = errors.New("instproxy: the app is built for another architecture")
	ErrInstallProhibited             = errors.New("instproxy: installing apps is prohibited on this device")
	ErrUninstallProhibited           = errors.New("instproxy: this app cannot be uninstalled")
)

var sentinels = map[string]error{
	ErrorApplicationVerificationFailed: ErrApplicationVerificationFailed,
	ErrorPackageInspectionFailed:       ErrPackageInspectionFailed,
	ErrorPackageExtractionFailed:       ErrPackageExtractionFailed,
	ErrorMissingPackagePath:            ErrMissingPackagePath,
	ErrorMissingApplicationIdentifier:  ErrMissingApplicationIdentifier,
	ErrorMissingCommand:                ErrMissingCommand,
	ErrorUnknownCommand:                ErrUnknownCommand,
	ErrorAPIInternalError:              ErrAPIInternalError,
	ErrorDeviceOSVersionTooLow:         ErrDeviceOSVersionTooLow,
	ErrorIncorrectArchitecture:         ErrIncorrectArchitecture,
	ErrorInstallProhibited:             ErrInstallProhibited,
	ErrorUninstallProhibited:           ErrUninstallProhibited,
}

// DeviceError is an {Error, ErrorDescription, ErrorDetail} reply.
type DeviceError struct {
	Command     string
	Name        string // Error
	Description string // ErrorDescription
	Detail      uint64 // ErrorDetail, 0 if absent
}

func (e *DeviceError) Error() string {
	s := fmt.Sprintf("instproxy: %s: %s", e.Command, e.Name)
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.Name == ErrorApplicationVerificationFailed {
		s += " (the app's signature or provisioning profile does not allow this device)"
	}
	return s
}

// Is matches the sentinel of e's name.
func (e *DeviceError) Is(target error) bool {
	s, ok := sentinels[e.Name]
	return ok && s == target
}

// DeviceErrorName and DeviceErrorDescription let packages that cannot
// name this type (the zip conduit's device role, through an interface)
// read the error a device reports.
func (e *DeviceError) DeviceErrorName() string        { return e.Name }
func (e *DeviceError) DeviceErrorDescription() string { return e.Description }
