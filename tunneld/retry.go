package tunneld

import (
	"errors"
	"fmt"

	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
)

// retryError tells the manager when to try again after a failure that a
// quick retry cannot fix (tunnel.Retrier), says in plain words what
// happened for the log and the APIs' error replies, and names the
// pymobiledevice3 exception its API reports. The cause stays reachable
// through Unwrap.
type retryError struct {
	udid      string
	what      string
	policy    retryPolicy
	exception string
	err       error
}

// Error says what happened and what to do, without the cause's own
// advice (written for a command the user runs again).
func (e *retryError) Error() string {
	return fmt.Sprintf("tunneld: device %s: %s", e.udid, e.what)
}

func (e *retryError) Unwrap() error         { return e.err }
func (e *retryError) Retry() retryPolicy    { return e.policy }
func (e *retryError) ExceptionName() string { return e.exception }

// classify wraps the establishment failures that must not be retried at
// the usual pace:
//   - the user refused the Trust dialog (lockdown or RemotePairing), or
//     left it unanswered for the whole attempt: another attempt a second
//     later would raise the dialog again, so the manager waits minutes
//     (or for a replug, which is the user asking again);
//   - the path cannot work on this device (no CoreDeviceProxy before
//     iOS 17.4, QUIC on iOS 18.2+): not retried until the device is
//     attached again; the message names what works instead.
//
// Everything else is returned as it is.
func classify(udid string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lockdown.ErrUserDeniedPairing), errors.Is(err, pairing.ErrRejected):
		return &retryError{udid: udid, policy: retrySlow, exception: "UserDeniedPairingError", err: err,
			what: "the user refused to pair (Don't Trust was tapped on the iPhone); not asking again for a few minutes: unplug and replug the iPhone to be asked at once"}
	case errors.Is(err, lockdown.ErrTrustTimeout):
		return &retryError{udid: udid, policy: retrySlow, exception: "PairingDialogResponsePendingError", err: err,
			what: "nobody answered the Trust dialog on the iPhone; asking again in a few minutes, or at once when the iPhone is plugged in again"}
	case errors.Is(err, establish.ErrNoCoreDeviceProxy):
		return &retryError{udid: udid, policy: retryOnAttach, exception: "InvalidServiceError", err: err,
			what: "this iOS (17.0-17.3) has no CoreDeviceProxy, so usbmuxd cannot carry its tunnel: not retried; tunneld uses the USB-NCM link when it sees one (--usb), or run 'iosmux pair --udid " + udid + "' then 'iosmux start-tunnel --connection usb'"}
	case errors.Is(err, establish.ErrQUICUnsupported):
		return &retryError{udid: udid, policy: retryOnAttach, exception: "QuicProtocolNotSupportedError", err: err,
			what: "the device does not speak QUIC tunnels (iOS 18.2 and later): not retried; run tunneld with --protocol tcp"}
	}
	return err
}
