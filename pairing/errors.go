package pairing

import (
	"errors"
	"fmt"
)

// Step names one message or phase of the protocol. Every error returned by a
// handshake is an *Error carrying the step it failed in.
type Step string

// Steps, in protocol order.
const (
	StepHandshake        Step = "handshake"
	StepVerifyM1         Step = "pair-verify M1"
	StepVerifyM2         Step = "pair-verify M2"
	StepVerifyM3         Step = "pair-verify M3"
	StepVerifyM4         Step = "pair-verify M4"
	StepVerifyFailed     Step = "pairVerifyFailed"
	StepSetupM1          Step = "pair-setup M1"
	StepSetupM2          Step = "pair-setup M2"
	StepSetupM3          Step = "pair-setup M3"
	StepSetupM4          Step = "pair-setup M4"
	StepSetupM5          Step = "pair-setup M5"
	StepSetupM6          Step = "pair-setup M6"
	StepCreateListener   Step = "createListener"
	StepRemoteUnlockKey  Step = "createRemoteUnlockKey"
	StepEncryptedRequest Step = "encrypted request"
	StepSaveRecord       Step = "save pair record"
)

// Error is a failure at one step.
type Error struct {
	Step Step
	Err  error
}

func (e *Error) Error() string { return "pairing: " + string(e.Step) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func stepErr(s Step, err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	return &Error{Step: s, Err: err}
}

// Sentinel errors. Use errors.Is; the *Error around them names the step.
var (
	// ErrMalformed: a message could not be decoded or lacks a required item.
	ErrMalformed = errors.New("malformed message")
	// ErrUnexpected: a well-formed message arrived at the wrong time.
	ErrUnexpected = errors.New("unexpected message")
	// ErrAuthentication: the peer reported TLV ERROR 2, or a proof,
	// signature or AEAD tag did not verify.
	ErrAuthentication = errors.New("authentication failed")
	// ErrRejected: the user tapped Don't Trust (pairingRejectedWithError).
	ErrRejected = errors.New("pairing rejected on the device")
	// ErrNeedPIN: the device expects a PIN and the config has no PIN func.
	ErrNeedPIN = errors.New("the device asks for a PIN and none was given")
	// ErrNotVerified: an encrypted request before pair-verify or pair-setup.
	ErrNotVerified = errors.New("no verified session")
	// ErrFrameTooLarge: an RPPairing body over 65535 bytes.
	ErrFrameTooLarge = errors.New("message too large for an RPPairing frame")
)

// Code is the one-byte value of a TLV ERROR item (remotepairing.md §5.1.3). References
// disagree on codes above 3 (remotepairing.md §11); they are reported as numbers.
type Code byte

// Codes the protocol produces; only CodeAuthentication is seen in practice.
const (
	CodeUnknown        Code = 1
	CodeAuthentication Code = 2
	CodeBackoff        Code = 3
)

func (c Code) String() string {
	switch c {
	case CodeUnknown:
		return "unknown"
	case CodeAuthentication:
		return "authentication"
	case CodeBackoff:
		return "backoff"
	}
	return fmt.Sprintf("code %d", byte(c))
}

// DeviceError is a TLV ERROR item in a peer's pairing message.
type DeviceError struct {
	Code Code
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("peer reported error %d (%v)", byte(e.Code), e.Code)
}

// Is makes errors.Is(err, ErrAuthentication) hold for ERROR 2.
func (e *DeviceError) Is(target error) bool {
	return target == ErrAuthentication && e.Code == CodeAuthentication
}

// RejectedError carries the device's description from
// pairingRejectedWithError.
type RejectedError struct {
	Description string
}

func (e *RejectedError) Error() string {
	if e.Description == "" {
		return ErrRejected.Error()
	}
	return ErrRejected.Error() + ": " + e.Description
}

func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// RequestError is an errorExtended reply to an encrypted request.
type RequestError struct {
	Request     string
	Description string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("device refused %s: %s", e.Request, e.Description)
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

func unexpected(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnexpected}, args...)...)
}
