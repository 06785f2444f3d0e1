// Package safeplist decodes property lists that come from another process
// or from a file: XML and binary only, and never a panic.
//
// howett.net/plist falls back to the OpenStep and GNUstep text formats, in
// which nearly any stray bytes parse as a string, and it re-raises runtime
// errors from malformed input as panics. Every plist iosmux reads (usbmuxd
// and lockdownd messages, lockdown over RSD, pair records) is XML or binary.
package safeplist

import (
	"errors"
	"fmt"

	"howett.net/plist"
)

// Unmarshal decodes the XML or binary plist b into v.
func Unmarshal(b []byte, v any) (err error) {
	if len(b) == 0 {
		return errors.New("empty plist")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plist decoder failed: %v", r)
		}
	}()
	format, err := plist.Unmarshal(b, v)
	if err != nil {
		return err
	}
	if format != plist.XMLFormat && format != plist.BinaryFormat {
		return fmt.Errorf("plist in %s format, want XML or binary", plist.FormatNames[format])
	}
	return nil
}
