package zipconduit

import (
	"errors"
	"fmt"

	"github.com/iosmux/iosmux/lockdown"
)

// StatusDataComplete ends a successful install.
const StatusDataComplete = "DataComplete"

// Progress is one progress message.
type Progress struct {
	Percent int // -1 when the message has none
	Status  string
}

// Error is a failure the device reports, in InstallProgressDict or at
// the top of the message (appium saw ExtractionFailed there).
type Error struct {
	Name, Description string
}

// ApplicationVerificationFailed is the signing error.
const ApplicationVerificationFailed = "ApplicationVerificationFailed"

// ErrNotSigned matches an Error named ApplicationVerificationFailed.
var ErrNotSigned = errors.New("zipconduit: the app is not signed for this device")

func (e *Error) Error() string {
	s := "zipconduit: install failed: " + e.Name
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.Name == ApplicationVerificationFailed {
		s += " (check the app's signature and provisioning profile)"
	}
	return s
}

// Is matches ErrNotSigned.
func (e *Error) Is(target error) bool {
	return target == ErrNotSigned && e.Name == ApplicationVerificationFailed
}

var errMalformed = errors.New("zipconduit: malformed progress message")

// ParseProgress reads one device message (docs/protocols/zipconduit.md
// §4): done at {Status: DataComplete}; an *Error for an Error at the top
// or in InstallProgressDict; progress from InstallProgressDict otherwise.
func ParseProgress(m lockdown.Message) (p Progress, done bool, err error) {
	if st, ok := m.String("Status"); ok && st == StatusDataComplete {
		return Progress{Percent: 100, Status: st}, true, nil
	}
	if e, ok := m["Error"]; ok {
		desc, _ := m.String("ErrorDescription")
		return Progress{}, false, &Error{Name: fmt.Sprint(e), Description: desc}
	}
	d, ok := m.Dict("InstallProgressDict")
	if !ok {
		return Progress{}, false, fmt.Errorf("%w: %v", errMalformed, map[string]any(m))
	}
	if e, ok := d["Error"]; ok {
		desc, _ := d.String("ErrorDescription")
		return Progress{}, false, &Error{Name: fmt.Sprint(e), Description: desc}
	}
	p = Progress{Percent: -1}
	p.Status, _ = d.String("Status")
	if v, ok := d.Uint("PercentComplete"); ok {
		p.Percent = int(min(v, 100))
	}
	return p, false, nil
}
