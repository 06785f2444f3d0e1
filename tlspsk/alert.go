package tlspsk

import (
	"errors"
	"strconv"
)

// Alert is a TLS alert description (RFC 5246 §7.2, RFC 4279 §2, RFC 5746).
type Alert uint8

// The alerts tlspsk sends or names when received.
const (
	AlertCloseNotify           Alert = 0
	AlertUnexpectedMessage     Alert = 10
	AlertBadRecordMAC          Alert = 20
	AlertRecordOverflow        Alert = 22
	AlertDecompressionFailure  Alert = 30
	AlertHandshakeFailure      Alert = 40
	AlertIllegalParameter      Alert = 47
	AlertAccessDenied          Alert = 49
	AlertDecodeError           Alert = 50
	AlertDecryptError          Alert = 51
	AlertProtocolVersion       Alert = 70
	AlertInsufficientSecurity  Alert = 71
	AlertInternalError         Alert = 80
	AlertInappropriateFallback Alert = 86
	AlertUserCanceled          Alert = 90
	AlertNoRenegotiation       Alert = 100
	AlertUnsupportedExtension  Alert = 110
	AlertUnknownPSKIdentity    Alert = 115
	alertLevelWarning          uint8 = 1
	alertLevelFatal            uint8 = 2
)

var alertNames = map[Alert]string{
	AlertCloseNotify:           "close notify",
	AlertUnexpectedMessage:     "unexpected message",
	AlertBadRecordMAC:          "bad record MAC",
	AlertRecordOverflow:        "record overflow",
	AlertDecompressionFailure:  "decompression failure",
	AlertHandshakeFailure:      "handshake failure",
	AlertIllegalParameter:      "illegal parameter",
	AlertAccessDenied:          "access denied",
	AlertDecodeError:           "decode error",
	AlertDecryptError:          "decrypt error",
	AlertProtocolVersion:       "protocol version not supported",
	AlertInsufficientSecurity:  "insufficient security",
	AlertInternalError:         "internal error",
	AlertInappropriateFallback: "inappropriate fallback",
	AlertUserCanceled:          "user canceled",
	AlertNoRenegotiation:       "no renegotiation",
	AlertUnsupportedExtension:  "unsupported extension",
	AlertUnknownPSKIdentity:    "unknown PSK identity",
}

func (a Alert) String() string {
	if s, ok := alertNames[a]; ok {
		return s
	}
	return "alert(" + strconv.Itoa(int(a)) + ")"
}

// level is the alert level tlspsk sends a description with: the two that
// do not end the connection are warnings, everything else is fatal.
func (a Alert) level() uint8 {
	if a == AlertCloseNotify || a == AlertNoRenegotiation {
		return alertLevelWarning
	}
	return alertLevelFatal
}

// AlertError is the error a connection fails with when an alert ends it:
// either the peer sent a fatal alert (Remote) or tlspsk detected a problem,
// sent Alert to the peer and stopped (Err says what). Recover it with
// errors.As; errors.Is matches another *AlertError with the same Alert and
// Remote.
type AlertError struct {
	Alert  Alert
	Remote bool
	Err    error // the local cause; nil when Remote
}

func (e *AlertError) Error() string {
	if e.Remote {
		return "tlspsk: remote error: " + e.Alert.String()
	}
	if e.Err == nil {
		return "tlspsk: local error: " + e.Alert.String()
	}
	return e.Err.Error() + " (sent alert: " + e.Alert.String() + ")"
}

func (e *AlertError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, &AlertError{Alert: AlertBadRecordMAC, Remote: true})
// work without comparing the cause.
func (e *AlertError) Is(target error) bool {
	t, ok := target.(*AlertError)
	return ok && t.Alert == e.Alert && t.Remote == e.Remote
}

// Errors a caller may branch on.
var (
	// ErrBadRecordMAC: a record failed authentication (wrong key, tampering).
	ErrBadRecordMAC = errors.New("tlspsk: bad record MAC")
	// ErrBadFinished: the peer's Finished did not match the transcript.
	ErrBadFinished = errors.New("tlspsk: peer Finished verify_data mismatch")
)

// localAlert builds the error for an alert tlspsk sends.
func localAlert(a Alert, err error) *AlertError {
	return &AlertError{Alert: a, Err: err}
}
