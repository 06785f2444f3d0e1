package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/spf13/cobra"
)

const listHelp = `
Asks usbmuxd for its devices and each device's lockdownd for ProductType,
ProductVersion and DeviceName. Those values are readable before a session;
when the device withholds one and usbmuxd holds a pair record for it, a
session is started to read it. A device that cannot be queried is still
listed, with the error.

The usbmuxd address comes from --usbmux-address, else env
PYMOBILEDEVICE3_USBMUX, else env USBMUXD_SOCKET_ADDRESS, else
/var/run/usbmuxd. Accepted forms: /path, UNIX:/path, unix:///path,
tcp://host:port, host:port, [v6]:port.`

// listEntry is one device of `iosmux list --json`.
type listEntry struct {
	UDID           string `json:"udid"`
	DeviceID       uint32 `json:"device_id"`
	ConnectionType string `json:"connection_type"`
	ProductType    string `json:"product_type,omitempty"`
	ProductVersion string `json:"product_version,omitempty"`
	Name           string `json:"name,omitempty"`
	Error          string `json:"error,omitempty"`
}

func newListCmd(a *app) *cobra.Command {
	var o listOptions
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "list devices attached through usbmuxd: UDID, connection, model, iOS version, name",
		Long:    listHelp,
		Example: "  iosmux list\n  iosmux list --json\n  USBMUXD_SOCKET_ADDRESS=UNIX:/tmp/sim/usbmuxd iosmux list",
		RunE:    func(cmd *cobra.Command, args []string) error { return runList(cmd.Context(), a, o) },
	}
	addJSONFlag(cmd, &o.asJSON, "the devices")
	addUsbmuxFlag(cmd, &o.muxAddr)
	addTimeoutFlag(cmd, &o.timeout, 10*time.Second, "per device (and for listing)")
	return cmd
}

type listOptions struct {
	asJSON  bool
	muxAddr string
	timeout time.Duration
}

func runList(ctx context.Context, a *app, o listOptions) error {
	mux, err := newUsbmuxClient(a, o.muxAddr)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, o.timeout)
	devs, err := mux.ListDevices(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	entries := make([]listEntry, 0, len(devs))
	for _, d := range devs {
		e := listEntry{UDID: d.UDID(), DeviceID: d.DeviceID, ConnectionType: d.ConnectionType}
		dctx, cancel := context.WithTimeout(ctx, o.timeout)
		vals, err := lockdown.ReadSummary(dctx, mux, d)
		cancel()
		if err != nil {
			e.Error = err.Error()
			a.log.Warn("query device", "udid", e.UDID, "err", err)
		}
		e.ProductType, _ = vals["ProductType"].(string)
		e.ProductVersion, _ = vals["ProductVersion"].(string)
		e.Name, _ = vals["DeviceName"].(string)
		entries = append(entries, e)
	}
	if o.asJSON {
		return writeJSON(a.stdout, entries)
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintln(a.stderr, "no devices")
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UDID\tCONNECTION\tPRODUCT\tVERSION\tNAME")
	for _, e := range entries {
		name := e.Name
		if e.Error != "" {
			name = "(" + e.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.UDID, e.ConnectionType, dash(e.ProductType), dash(e.ProductVersion), name)
	}
	return tw.Flush()
}
