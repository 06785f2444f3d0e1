package housearrest

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/reach"
)

// Command is the vend command.
type Command string

const (
	// VendContainer vends the app's whole data container: for apps
	// installed with a development profile.
	VendContainer Command = "VendContainer"
	// VendDocuments vends the container with only Documents reachable:
	// for apps that share files (UIFileSharingEnabled).
	VendDocuments Command = "VendDocuments"
)

// Error names the device's refusals (docs/protocols/housearrest.md §3).
const (
	ErrorApplicationLookupFailed  = "ApplicationLookupFailed"
	ErrorInstallationLookupFailed = "InstallationLookupFailed"
)

// Sentinels callers branch on.
var (
	// ErrNotInstalled: no app has that bundle id.
	ErrNotInstalled = errors.New("housearrest: the app is not installed")
	// ErrNotVendable: the app exists but may not be vended this way.
	ErrNotVendable = errors.New("housearrest: the device refuses to share this app's files")
)

// Error is a refusal from the device.
type Error struct {
	Command  Command
	BundleID string
	Name     string // the reply's Error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("housearrest: %s %s: %s", e.Command, e.BundleID, e.Name)
	switch e.Name {
	case ErrorApplicationLookupFailed:
		msg += " (no app with that bundle id is installed)"
	case ErrorInstallationLookupFailed:
		if e.Command == VendContainer {
			msg += " (the whole container is shared only for apps installed with a development profile; --documents reaches Documents of apps that share files)"
		} else {
			msg += " (the app does not share files: UIFileSharingEnabled is not set in its Info.plist)"
		}
	}
	return msg
}

// Is maps the device's error names to the sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotInstalled:
		return e.Name == ErrorApplicationLookupFailed
	case ErrNotVendable:
		return e.Name == ErrorInstallationLookupFailed
	}
	return false
}

// Vend sends one vend command on conn, positioned at the service's first
// byte, and reads the device's answer. On success conn carries AFC from
// its next byte (read exactly one frame: nothing of the AFC stream is
// consumed); on failure the caller closes it. Success needs Status
// "Complete" and no Error (go-ios and appium require the first, pmd3 and
// idevice look for the second).
func Vend(ctx context.Context, conn net.Conn, cmd Command, bundleID string) error {
	pc := lockdown.NewPlistConn(conn, 64<<10)
	if err := pc.Send(ctx, map[string]any{"Command": string(cmd), "Identifier": bundleID}); err != nil {
		return fmt.Errorf("housearrest: %s %s: send: %w", cmd, bundleID, err)
	}
	rep, err := pc.ReceiveMessage(ctx)
	if err != nil {
		return fmt.Errorf("housearrest: %s %s: read the reply: %w", cmd, bundleID, err)
	}
	if name, ok := rep["Error"]; ok {
		return &Error{Command: cmd, BundleID: bundleID, Name: fmt.Sprint(name)}
	}
	if st, _ := rep.String("Status"); st != "Complete" {
		return fmt.Errorf("housearrest: %s %s: reply without Status Complete: %v", cmd, bundleID, map[string]any(rep))
	}
	return nil
}

// Open opens a house_arrest connection through o and vends bundleID's
// container (documents: only Documents). The connection it returns
// carries AFC; hand it to an AFC client. One command per connection.
func Open(ctx context.Context, o reach.Opener, bundleID string, documents bool) (net.Conn, error) {
	cmd := VendContainer
	if documents {
		cmd = VendDocuments
	}
	conn, err := o.Open(ctx, reach.HouseArrest)
	if err != nil {
		return nil, err
	}
	if err := Vend(ctx, conn, cmd, bundleID); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", o.UDID(), err)
	}
	return conn, nil
}

// OpenAuto vends the whole container and, when the device refuses that
// (the app was not installed with a development profile), Documents on a
// fresh connection, as go-ios does. It returns the command that worked.
func OpenAuto(ctx context.Context, o reach.Opener, bundleID string) (net.Conn, Command, error) {
	conn, err := Open(ctx, o, bundleID, false)
	if err == nil {
		return conn, VendContainer, nil
	}
	if !errors.Is(err, ErrNotVendable) {
		return nil, "", err
	}
	conn, derr := Open(ctx, o, bundleID, true)
	if derr != nil {
		return nil, "", fmt.Errorf("%w; and Documents: %w", err, derr)
	}
	return conn, VendDocuments, nil
}
