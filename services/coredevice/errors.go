package coredevice

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/iosmux/iosmux/xpc"
)

// Error domains seen in CoreDevice.error (coredevice.md §2.2).
const (
	DomainCoreDevice     = "com.apple.dt.CoreDeviceError"
	DomainAction         = "CoreDevice.ActionError"
	DomainRemoteServices = "com.apple.dt.remoteservices.error"
)

// Error codes iosmux knows. Where no reference gives the device's code the
// value is the simulator's choice (coredevice.md §6).
const (
	// CodeInvalidRequest (CoreDeviceError): the envelope or the input is
	// malformed (SIM).
	CodeInvalidRequest = 1
	// CodeLaunchFailed (CoreDeviceError): "The application failed to
	// launch", for example because it is not installed (appium).
	CodeLaunchFailed = 10002
	// CodeNoSuchProcess (CoreDeviceError): the pid is not running (SIM;
	// the device's code is unconfirmed).
	CodeNoSuchProcess = 10003
	// CodeNotImplemented (ActionError): the service does not implement the
	// feature or action.
	CodeNotImplemented = 2
	// CodeNotPermitted (ActionError): "This operation cannot be performed".
	CodeNotPermitted = 5
	// CodeInvalidCommand (remoteservices): a CoreDevice envelope sent to a
	// service that speaks another dialect.
	CodeInvalidCommand = 11014
)

// userInfo keys, as an NSError has them.
const (
	KeyDescription   = "NSLocalizedDescription"
	KeyFailureReason = "NSLocalizedFailureReason"
	KeyDebug         = "NSDebugDescription"
)

// Sentinels an *Error matches with errors.Is.
var (
	// ErrInvalidRequest: the device could not read the request.
	ErrInvalidRequest = errors.New("coredevice: invalid request")
	// ErrLaunchFailed: the app did not launch (not installed, …).
	ErrLaunchFailed = errors.New("coredevice: the application failed to launch")
	// ErrNotInstalled: the app named is not installed (a launch failure
	// whose reason says so).
	ErrNotInstalled = errors.New("coredevice: the application is not installed")
	// ErrNoSuchProcess: no process with that pid.
	ErrNoSuchProcess = errors.New("coredevice: no such process")
	// ErrNotImplemented: the device does not implement the feature.
	ErrNotImplemented = errors.New("coredevice: not implemented by the device")
	// ErrNotPermitted: the device refuses the operation.
	ErrNotPermitted = errors.New("coredevice: operation not permitted by the device")
)

// Error is a CoreDevice.error reply: an NSError's domain, code and the
// string values of its userInfo.
type Error struct {
	Domain   string
	Code     int64
	UserInfo map[string]string
	// Feature and UDID say which invocation failed on which device; the
	// client fills them in.
	Feature string
	UDID    string
}

// Description is the error's text as appium builds it: the localized
// description (or failure reason, or debug description), followed by the
// failure reason when it adds something.
func (e *Error) Description() string {
	desc := e.UserInfo[KeyDescription]
	if desc == "" {
		desc = e.UserInfo[KeyFailureReason]
	}
	if desc == "" {
		desc = e.UserInfo[KeyDebug]
	}
	if desc == "" {
		desc = "no description"
	}
	if r := e.UserInfo[KeyFailureReason]; r != "" && r != desc {
		desc += " " + r
	}
	return desc
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("coredevice: ")
	if e.UDID != "" {
		b.WriteString(e.UDID + ": ")
	}
	if e.Feature != "" {
		b.WriteString(FeatureName(e.Feature) + ": ")
	}
	fmt.Fprintf(&b, "%s [%s %d]", e.Description(), e.Domain, e.Code)
	return b.String()
}

// Is matches the sentinels by domain and code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrInvalidRequest:
		return e.Domain == DomainCoreDevice && e.Code == CodeInvalidRequest
	case ErrLaunchFailed:
		return e.Domain == DomainCoreDevice && e.Code == CodeLaunchFailed
	case ErrNotInstalled:
		return e.Domain == DomainCoreDevice && e.Code == CodeLaunchFailed &&
			strings.Contains(e.UserInfo[KeyFailureReason]+e.UserInfo[KeyDescription], "not installed")
	case ErrNoSuchProcess:
		return e.Domain == DomainCoreDevice && e.Code == CodeNoSuchProcess
	case ErrNotImplemented:
		return e.Domain == DomainAction && e.Code == CodeNotImplemented
	case ErrNotPermitted:
		return e.Domain == DomainAction && e.Code == CodeNotPermitted
	}
	return false
}

// Body encodes the error as a reply: {CoreDevice.error: {domain, code,
// userInfo}}, code an int64, userInfo's well-known keys first.
func (e *Error) Body() *xpc.Dict {
	ui := xpc.NewDict()
	keys := make([]string, 0, len(e.UserInfo))
	for k := range e.UserInfo {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		switch k {
		case KeyDescription:
			return 0
		case KeyFailureReason:
			return 1
		case KeyDebug:
			return 2
		}
		return 3
	}
	slices.SortFunc(keys, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		ui.Set(k, xpc.String(e.UserInfo[k]))
	}
	return xpc.NewDict(KeyError, xpc.NewDict("domain", xpc.String(e.Domain), "code", xpc.Int64(e.Code), "userInfo", ui))
}

// ParseError reads a CoreDevice.error dictionary. The code's wire type is
// unconfirmed, so int64 and uint64 are both read; userInfo values that are
// not strings are left out.
func ParseError(d *xpc.Dict) *Error {
	e := &Error{Domain: d.String("domain"), UserInfo: map[string]string{}}
	e.Code, _ = d.Integer("code")
	for k, v := range d.Dict("userInfo").All() {
		if s, ok := v.(xpc.String); ok {
			e.UserInfo[k] = string(s)
		}
	}
	return e
}

// Errorf builds a CoreDeviceError with the description and reason given:
// what device-role handlers return for a refusal.
func Errorf(code int64, description, reasonFormat string, args ...any) *Error {
	e := &Error{Domain: DomainCoreDevice, Code: code, UserInfo: map[string]string{KeyDescription: description}}
	if reasonFormat != "" {
		e.UserInfo[KeyFailureReason] = fmt.Sprintf(reasonFormat, args...)
	}
	return e
}

// InvalidInput is the refusal of a request whose input lacks what the
// feature needs (CoreDeviceError 1, SIM).
func InvalidInput(format string, args ...any) *Error {
	return Errorf(CodeInvalidRequest, "Invalid request", format, args...)
}

// NotImplemented is ActionError 2 for a feature or action, in the text
// appium's tests show.
func NotImplemented(id string) *Error {
	return &Error{Domain: DomainAction, Code: CodeNotImplemented,
		UserInfo: map[string]string{KeyDescription: fmt.Sprintf("Action '%s' is not implemented.", id)}}
}

// NotPermitted is ActionError 5.
func NotPermitted() *Error {
	return &Error{Domain: DomainAction, Code: CodeNotPermitted,
		UserInfo: map[string]string{KeyDescription: "This operation cannot be performed"}}
}

// ErrFeatureNotListed is matched by a *FeatureError: the service's RSD
// entry does not list the feature, so nothing was sent.
var ErrFeatureNotListed = errors.New("coredevice: feature not offered by the service")

// FeatureError is the feature gate's refusal (coredevice.md §2.4).
type FeatureError struct {
	UDID    string
	Service string
	Feature string
	Listed  []string
}

func (e *FeatureError) Error() string {
	names := make([]string, len(e.Listed))
	for i, f := range e.Listed {
		names[i] = FeatureName(f)
	}
	return fmt.Sprintf("coredevice: %s: %s does not offer %s (it lists %s); a newer developer disk image may add it",
		e.UDID, e.Service, FeatureName(e.Feature), strings.Join(names, ", "))
}

func (e *FeatureError) Is(target error) bool { return target == ErrFeatureNotListed }
