package lockdown

import (
	"context"
	"errors"
	"fmt"

	"github.com/iosmux/iosmux/usbmux"
)

// SummaryKeys are the values that name a device to a person: what `iosmux
// list` and the device picker show.
var SummaryKeys = []string{"ProductType", "ProductVersion", "DeviceName"}

// ReadSummary reads the top-level values of dev, from a session if the
// values readable before one lack a SummaryKeys entry and usbmuxd holds a
// pair record (an unpaired device gives what it shows to anyone).
func ReadSummary(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry) (Message, error) {
	lc, err := DialUsbmux(ctx, mux, dev.DeviceID, ClientConfig{})
	if err != nil {
		return nil, err
	}
	defer lc.Close()
	vals, err := lc.GetValues(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("GetValue: %w", err)
	}
	complete := true
	for _, k := range SummaryKeys {
		if _, ok := vals[k]; !ok {
			complete = false
		}
	}
	if complete {
		return vals, nil
	}
	rec, err := ReadPairRecord(ctx, mux, dev.UDID())
	if errors.Is(err, usbmux.ErrNoPairRecord) {
		return vals, nil
	}
	if err != nil {
		return vals, err
	}
	if _, err := lc.StartSession(ctx, rec); err != nil {
		return vals, fmt.Errorf("StartSession: %w", err)
	}
	all, err := lc.GetValues(ctx, "")
	if err != nil {
		return vals, fmt.Errorf("GetValue in a session: %w", err)
	}
	return all, nil
}
