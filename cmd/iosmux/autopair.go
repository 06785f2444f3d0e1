package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/spf13/cobra"
)

// trustPrompt is what every command prints while a device shows its Trust
// dialog (lockdown's Pair pending, RemotePairing's awaitingUserConsent).
const trustPrompt = "Tap Trust on the iPhone and enter its passcode"

// pairTimeout bounds ensurePaired, the Trust dialog included: a person has
// to find the iPhone, unlock it and tap Trust.
const pairTimeout = 3 * time.Minute

// addAutopairFlag adds --no-autopair (pymobiledevice3's name).
func addAutopairFlag(cmd *cobra.Command, p *bool) {
	cmd.Flags().BoolVar(p, "no-autopair", false, "do not pair a device that is not paired over lockdown (no Trust dialog): fail and say what to run")
}

// ensurePaired is lockdown.EnsurePaired for a command: pairs dev when
// needed unless noAutopair, printing the Trust prompt to w (where the user
// looks: stderr when stdout carries data), on its own clock. paired
// reports a new pairing.
func ensurePaired(ctx context.Context, a *app, mux *usbmux.Client, dev usbmux.DeviceEntry, noAutopair bool, w io.Writer) (rec *lockdown.PairRecord, paired bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, pairTimeout)
	defer cancel()
	rec, paired, err = lockdown.EnsurePaired(ctx, mux, dev, autopairOptions(noAutopair, w))
	if err != nil {
		return nil, false, err
	}
	if paired {
		a.log.Info("paired over lockdown; usbmuxd keeps the record", "udid", dev.UDID())
	}
	return rec, paired, nil
}

// autopairOptions is how a command pairs over lockdown: this host's name
// on the device, the Trust prompt to w, or no pairing at all with
// --no-autopair.
func autopairOptions(noAutopair bool, w io.Writer) lockdown.PairOptions {
	host, err := os.Hostname()
	if err != nil {
		host = "iosmux"
	}
	return lockdown.PairOptions{
		HostName:   host,
		NoAutopair: noAutopair,
		OnPrompt:   func() { fmt.Fprintln(w, trustPrompt) },
	}
}
