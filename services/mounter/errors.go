package mounter

import (
	"errors"
	"fmt"
	"strings"
)

// Device error names (the reply's Error).
const (
	ErrorImageMountFailed = "ImageMountFailed"
	ErrorInternal         = "InternalError"
	ErrorDeviceLocked     = "DeviceLocked"
	ErrorUnknownCommand   = "UnknownCommand"
)

// Sentinels for errors.Is on a *DeviceError (matched on the reply's Error
// and the DetailedError substrings hosts match).
var (
	ErrDeveloperModeOff = errors.New("mounter: Developer Mode is off")
	ErrAlreadyMounted   = errors.New("mounter: a developer disk image is already mounted")
	ErrNotMounted       = errors.New("mounter: no developer disk image is mounted")
	ErrNoManifest       = errors.New("mounter: the device holds no manifest for this image")
	ErrDeviceLocked     = errors.New("mounter: the device is locked")
	ErrUnknownCommand   = errors.New("mounter: the device does not know the command")
)

// DeviceError is a failure reply: {Error, DetailedError}.
type DeviceError struct {
	Command string
	Code    string // Error
	Detail  string // DetailedError, may be empty
}

func (e *DeviceError) Error() string {
	s := fmt.Sprintf("mounter: %s: %s", e.Command, e.Code)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is matches the sentinels.
func (e *DeviceError) Is(target error) bool {
	switch target {
	case ErrDeveloperModeOff:
		return strings.Contains(e.Detail, "Developer mode is not enabled")
	case ErrAlreadyMounted:
		return strings.Contains(e.Detail, "is already mounted")
	case ErrNotMounted:
		return strings.Contains(e.Detail, "There is no matching entry")
	case ErrNoManifest:
		return e.Command == cmdQueryManifest
	case ErrDeviceLocked:
		return e.Code == ErrorDeviceLocked
	case ErrUnknownCommand:
		return e.Code == ErrorUnknownCommand
	}
	return false
}

// nsError renders a DetailedError the way the device writes NSErrors:
// Error Domain=com.apple.MobileStorage.ErrorDomain Code=<n> "<text>" with
// the cause nested under NSUnderlyingError.
func nsError(code int, text string, cause string) string {
	s := fmt.Sprintf(`Error Domain=com.apple.MobileStorage.ErrorDomain Code=%d %q`, code, text)
	if cause != "" {
		return s + " UserInfo={NSUnderlyingError=0x0 {" + cause + "}}"
	}
	return s + " UserInfo={NSLocalizedDescription=" + text + "}"
}
