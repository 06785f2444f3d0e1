package usbmux

import (
	"errors"
	"fmt"
)

// ErrMalformed marks a message that breaks the wire format: a bad header,
// a truncated payload, a plist that does not decode or lacks a required key.
var ErrMalformed = errors.New("usbmux: malformed message")

// ResultCode is the Number of a Result message (usbmux.md §2.2). Non-zero codes
// from real usbmuxd are also negated errno values (ENOENT for a missing pair
// record, EINVAL for a bad request), which is why 2 doubles as BADDEV and
// "no such record".
type ResultCode uint32

// Result codes.
const (
	ResultOK          ResultCode = 0
	ResultBadCommand  ResultCode = 1
	ResultBadDevice   ResultCode = 2 // also ENOENT: no pair record
	ResultConnRefused ResultCode = 3
	ResultBadVersion  ResultCode = 6
	ResultInvalid     ResultCode = 22 // EINVAL, what usbmuxd answers to a request missing its keys
)

func (c ResultCode) String() string {
	switch c {
	case ResultOK:
		return "ok"
	case ResultBadCommand:
		return "bad command"
	case ResultBadDevice:
		return "bad device or no such record"
	case ResultConnRefused:
		return "connection refused"
	case ResultBadVersion:
		return "bad protocol version"
	case ResultInvalid:
		return "invalid argument"
	}
	return fmt.Sprintf("result %d", uint32(c))
}

// ResultError is a non-zero Result to a request.
type ResultError struct {
	Request string // MessageType of the request
	Code    ResultCode
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("usbmux: %s: %v (%d)", e.Request, e.Code, uint32(e.Code))
}

// Is matches a ResultError with the same code (and, when the target names
// one, the same request), so errors.Is(err, ErrConnRefused) works.
func (e *ResultError) Is(target error) bool {
	t, ok := target.(*ResultError)
	return ok && t.Code == e.Code && (t.Request == "" || t.Request == e.Request)
}

// Sentinels for the results callers branch on.
var (
	// ErrBadDevice: the DeviceID is unknown (the device left) or, for
	// ReadPairRecord, there is no record for the UDID.
	ErrBadDevice = &ResultError{Code: ResultBadDevice}
	// ErrConnRefused: nothing listens on the device port.
	ErrConnRefused = &ResultError{Code: ResultConnRefused}
	// ErrNoPairRecord: ReadPairRecord found no record for the UDID.
	ErrNoPairRecord = errors.New("usbmux: no pair record")
	// ErrNotRunning: nothing listens at usbmuxd's address (no socket, or
	// the connection is refused).
	ErrNotRunning = errors.New("usbmux: usbmuxd is not running")
)
