package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

func init() {
	register(&command{name: "list", summary: "list devices attached through usbmuxd: UDID, connection, model, iOS version, name", run: runList})
}

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

// usbmuxAddressHelp is the --usbmux-address flag text shared by commands.
const usbmuxAddressHelp = "usbmuxd address (env PYMOBILEDEVICE3_USBMUX, USBMUXD_SOCKET_ADDRESS; default /var/run/usbmuxd)"

// newUsbmuxClient resolves the usbmuxd address: the flag, then
// PYMOBILEDEVICE3_USBMUX, then USBMUXD_SOCKET_ADDRESS
// (usbmux.md §1), then the platform default.
func newUsbmuxClient(a *app, flagValue string) (*usbmux.Client, error) {
	addr := usbmux.DefaultAddr()
	for _, src := range []struct{ name, value string }{
		{"--usbmux-address", flagValue},
		{"PYMOBILEDEVICE3_USBMUX", a.getenv("PYMOBILEDEVICE3_USBMUX")},
		{"USBMUXD_SOCKET_ADDRESS", a.getenv("USBMUXD_SOCKET_ADDRESS")},
	} {
		if src.value == "" {
			continue
		}
		parsed, err := usbmux.ParseAddr(src.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.name, err)
		}
		addr = parsed
		break
	}
	a.log.Debug("usbmuxd address", "addr", addr.String())
	return usbmux.NewClient(usbmux.Config{Addr: addr}), nil
}

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

func runList(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "list", "[--json] [--usbmux-address ADDR]", listHelp)
	asJSON := fs.Bool("json", false, "print the devices as JSON")
	addrFlag := fs.String("usbmux-address", "", usbmuxAddressHelp)
	timeout := fs.Duration("timeout", 10*time.Second, "time allowed per device (and for listing)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	mux, err := newUsbmuxClient(a, *addrFlag)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, *timeout)
	devs, err := mux.ListDevices(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	entries := make([]listEntry, 0, len(devs))
	for _, d := range devs {
		e := listEntry{UDID: d.UDID(), DeviceID: d.DeviceID, ConnectionType: d.ConnectionType}
		dctx, cancel := context.WithTimeout(ctx, *timeout)
		vals, err := deviceSummary(dctx, mux, d)
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
	if *asJSON {
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

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// summaryKeys are what `list` shows.
var summaryKeys = []string{"ProductType", "ProductVersion", "DeviceName"}

// deviceSummary reads the top-level lockdown values of d, from a session
// if the values before one lack a summary key and a pair record exists.
func deviceSummary(ctx context.Context, mux *usbmux.Client, d usbmux.Device) (lockdown.Message, error) {
	lc, err := lockdown.DialUsbmux(ctx, mux, d.DeviceID, lockdown.ClientConfig{})
	if err != nil {
		return nil, err
	}
	defer lc.Close()
	vals, err := lc.GetValues(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("GetValue: %w", err)
	}
	complete := true
	for _, k := range summaryKeys {
		if _, ok := vals[k]; !ok {
			complete = false
		}
	}
	if complete {
		return vals, nil
	}
	rec, err := lockdown.ReadPairRecord(ctx, mux, d.UDID())
	if errors.Is(err, usbmux.ErrNoPairRecord) {
		return vals, nil // unpaired: show what the device gives
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
