package main

import (
	"context"
	"fmt"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/spf13/cobra"
)

const lockdownHelp = `
Manages the classic (lockdown) pairing of a device attached through usbmuxd,
the one usbmuxd keeps a record of and every USB command relies on, as
'idevicepair' does. Commands that need it (info, start-tunnel, pair) make
it by themselves unless given --no-autopair; these subcommands do it
explicitly, or undo it.

The exit status is 0 on success and 1 when the device refused (Don't
Trust), is locked with a passcode, nobody answered in time, or (validate)
is not paired.`

// lockdownResult is the --json output of the subcommands.
type lockdownResult struct {
	UDID   string `json:"udid"`
	Action string `json:"action"`
	// NewPairing: pair made a new pairing (false: the device already
	// trusted usbmuxd's record).
	NewPairing bool   `json:"new_pairing"`
	HostID     string `json:"host_id,omitempty"`
}

type lockdownOptions struct {
	udid, muxAddr string
	timeout       time.Duration
	asJSON        bool
}

func newLockdownCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "lockdown",
		Short:   "the classic lockdown pairing over USB: pair, unpair, validate (like idevicepair)",
		Long:    lockdownHelp,
		Example: "  iosmux lockdown pair --udid 00008110-001A2B3C4D5E6F70\n  iosmux lockdown validate\n  iosmux lockdown unpair --json",
		RunE:    groupRun,
	}
	for _, sub := range []struct{ name, short, long, example string }{
		{"pair", "ask the device to trust this computer and save the record in usbmuxd",
			"Asks the device to trust this computer (tap Trust on the iPhone and enter its passcode) and saves the record in usbmuxd. A device that already trusts the record usbmuxd holds is left alone.",
			"  iosmux lockdown pair\n  iosmux lockdown pair --udid 00008110-001A2B3C4D5E6F70 --json"},
		{"unpair", "make the device forget this computer and delete usbmuxd's record",
			"Makes the device forget this computer (Unpair) and deletes the record usbmuxd holds. A device that had already forgotten it is not an error.",
			"  iosmux lockdown unpair --udid 00008110-001A2B3C4D5E6F70"},
		{"validate", "check that the device accepts usbmuxd's record",
			"Checks that the device accepts the record usbmuxd holds for it, by opening a lockdown session with it.",
			"  iosmux lockdown validate\n  iosmux lockdown validate --udid 00008110-001A2B3C4D5E6F70 --json"},
	} {
		var o lockdownOptions
		c := &cobra.Command{
			Use:     sub.name,
			Short:   sub.short,
			Long:    sub.long,
			Example: sub.example,
			RunE: func(cmd *cobra.Command, args []string) error {
				return runLockdown(cmd.Context(), a, cmd.Name(), o)
			},
		}
		addUDIDFlag(c, &o.udid, "")
		addTimeoutFlag(c, &o.timeout, pairTimeout, "for the whole exchange, including the user tapping Trust")
		addJSONFlag(c, &o.asJSON, "the result")
		addUsbmuxFlag(c, &o.muxAddr)
		cmd.AddCommand(c)
	}
	return cmd
}

func runLockdown(ctx context.Context, a *app, action string, o lockdownOptions) error {
	mux, err := newUsbmuxClient(a, o.muxAddr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	dev, err := a.findDevice(ctx, mux, o.udid)
	if err != nil {
		return err
	}
	msgs := a.stdout
	if o.asJSON {
		msgs = a.stderr
	}
	res := lockdownResult{UDID: dev.UDID(), Action: action}
	var text string
	switch action {
	case "pair":
		rec, paired, err := ensurePaired(ctx, a, mux, dev, false, msgs)
		if err != nil {
			return err
		}
		res.HostID, res.NewPairing = rec.HostID, paired
		text = "SUCCESS: Paired with device " + res.UDID
		if !paired {
			text = fmt.Sprintf("SUCCESS: %s already trusts this computer (usbmuxd's record validates)", res.UDID)
		}
	case "unpair":
		if err := lockdown.UnpairUsbmux(ctx, mux, dev); err != nil {
			return err
		}
		text = "SUCCESS: Unpaired with device " + res.UDID
	case "validate":
		rec, err := lockdown.ValidateUsbmux(ctx, mux, dev)
		if err != nil {
			return err
		}
		res.HostID = rec.HostID
		text = "SUCCESS: Validated pairing with device " + res.UDID
	}
	if o.asJSON {
		return writeJSON(a.stdout, res)
	}
	_, err = fmt.Fprintln(a.stdout, text)
	return err
}
