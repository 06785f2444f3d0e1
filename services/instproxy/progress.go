package instproxy

import (
	"errors"
	"fmt"

	"github.com/iosmux/iosmux/lockdown"
)

// Progress is one progress message of an install or uninstall.
type Progress struct {
	// Percent is PercentComplete, -1 when the message has none.
	Percent int
	// Status is the stage, e.g. "InstallingApplication".
	Status string
}

// StatusComplete ends every command.
const StatusComplete = "Complete"

var errMalformed = errors.New("instproxy: malformed reply")

// ParseProgress reads one reply of a command that reports progress. It
// returns done when Status is "Complete", a *DeviceError when the reply
// carries Error (go-ios, pmd3 and appium look at Error; idevice at
// ErrorDescription: either counts), and an error for a reply with neither
// a Status string nor an error (go-ios fails on those too).
func ParseProgress(command string, m lockdown.Message) (p Progress, done bool, err error) {
	_, hasErr := m["Error"]
	_, hasDesc := m["ErrorDescription"]
	if hasErr || hasDesc {
		de := &DeviceError{Command: command}
		de.Name, _ = m.String("Error")
		if de.Name == "" {
			de.Name = fmt.Sprint(m["Error"])
			if !hasErr {
				de.Name = ErrorAPIInternalError
			}
		}
		de.Description, _ = m.String("ErrorDescription")
		de.Detail, _ = m.Uint("ErrorDetail")
		return Progress{}, false, de
	}
	st, ok := m.String("Status")
	if !ok {
		return Progress{}, false, fmt.Errorf("%w: %s reply without Status: %v", errMalformed, command, map[string]any(m))
	}
	p = Progress{Percent: -1, Status: st}
	if v, ok := m.Uint("PercentComplete"); ok {
		p.Percent = int(min(v, 100))
	}
	return p, st == StatusComplete, nil
}
