package lockdown

import (
	"errors"
	"fmt"
)

// Error is a lockdownd reply carrying an Error string (lockdown.md §3), or the
// Result = "Failure" of pre-iOS-5 devices (Code "Failure").
type Error struct {
	Request string // the request that failed
	Code    string // lockdownd's Error value, e.g. "InvalidHostID"
}

func (e *Error) Error() string {
	if e.Request == "" {
		return "lockdown: " + e.Code
	}
	return fmt.Sprintf("lockdown: %s: %s", e.Request, e.Code)
}

// Is matches an Error with the same code and, when the target names one,
// the same request: errors.Is(err, ErrInvalidService).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Request == "" || t.Request == e.Request)
}

// Error codes the device role sends and callers branch on.
const (
	CodeInvalidHostID                = "InvalidHostID"
	CodeInvalidService               = "InvalidService"
	CodePairingDialogResponsePending = "PairingDialogResponsePending"
	CodeUserDeniedPairing            = "UserDeniedPairing"
	CodePasswordProtected            = "PasswordProtected"
	CodeMissingValue                 = "MissingValue"
	CodeGetProhibited                = "GetProhibited"
	CodeSetProhibited                = "SetProhibited"
	CodeSessionInactive              = "SessionInactive"
	CodeInvalidPairRecord            = "InvalidPairRecord"
	CodeInvalidRequest               = "InvalidRequest"
	CodeMissingKey                   = "MissingKey"
)

// Sentinels for errors.Is.
var (
	// ErrInvalidHostID: the device does not know this pairing; treat the
	// device as unpaired.
	ErrInvalidHostID = &Error{Code: CodeInvalidHostID}
	// ErrInvalidService: the service does not exist on this device (e.g.
	// CoreDeviceProxy before iOS 17.4).
	ErrInvalidService = &Error{Code: CodeInvalidService}
	// ErrPairingDialogResponsePending: the Trust dialog is showing.
	ErrPairingDialogResponsePending = &Error{Code: CodePairingDialogResponsePending}
	// ErrUserDeniedPairing: the user tapped Don't Trust.
	ErrUserDeniedPairing = &Error{Code: CodeUserDeniedPairing}
	// ErrPasswordProtected: the device is locked.
	ErrPasswordProtected = &Error{Code: CodePasswordProtected}
	// ErrMissingValue: no such key.
	ErrMissingValue = &Error{Code: CodeMissingValue}
)

// Pairing outcomes that are not lockdownd replies.
var (
	// ErrTrustTimeout: the Trust dialog showed and nobody answered it
	// before the caller's context ended.
	ErrTrustTimeout = errors.New("lockdown: no answer to the Trust dialog")
	// ErrNotPaired: usbmuxd holds no pair record the device accepts, and
	// pairing was not allowed (PairOptions.NoAutopair).
	ErrNotPaired = errors.New("lockdown: not paired with this host")
)
