package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

func init() {
	register(&command{name: "info", summary: "print a device's lockdown values (like ideviceinfo)", run: runInfo})
}

const infoHelp = `
Reads lockdownd values of a device attached through usbmuxd, like
'ideviceinfo': by default the whole top-level domain, inside a TLS session
opened with the pair record usbmuxd holds for the device. --domain and --key
narrow the query. --no-session reads without a session (no pair record
needed), which gives the reduced set a device shows to unpaired hosts.

--json prints the value as JSON: data as base64, dates as RFC 3339 text,
integers exact. Without --json, dictionaries print one "Key: value" per line,
nested ones indented, and data that is text (PEM keys) prints as text.

--udid may be left out when exactly one device is attached. The usbmuxd
address is chosen as for 'iosmux list'.`

func runInfo(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "info", "[--udid UDID] [--domain D] [--key K] [--no-session] [--json]", infoHelp)
	udid := fs.String("udid", "", "device UDID (dashes and case ignored)")
	domain := fs.String("domain", "", "lockdown domain to query (default: the top level)")
	key := fs.String("key", "", "single key to query (default: the whole domain)")
	noSession := fs.Bool("no-session", false, "query without a session (no pair record needed)")
	asJSON := fs.Bool("json", false, "print the value as JSON")
	addrFlag := fs.String("usbmux-address", "", usbmuxAddressHelp)
	timeout := fs.Duration("timeout", 15*time.Second, "time allowed for the whole query")
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
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	dev, err := findDevice(ctx, mux, *udid)
	if err != nil {
		return err
	}
	name := dev.UDID()
	step := func(what string, err error) error { return fmt.Errorf("device %s: %s: %w", name, what, err) }

	lc, err := lockdown.DialUsbmux(ctx, mux, dev.DeviceID, lockdown.ClientConfig{})
	if err != nil {
		return step("connect to lockdownd", err)
	}
	defer lc.Close()
	typ, err := lc.QueryType(ctx)
	if err != nil {
		return step("QueryType", err)
	}
	if typ != lockdown.TypeLockdown {
		return step("QueryType", fmt.Errorf("device is in %q mode, not normal lockdown", typ))
	}
	if !*noSession {
		rec, err := lockdown.ReadPairRecord(ctx, mux, name)
		if errors.Is(err, usbmux.ErrNoPairRecord) {
			return step("read pair record", fmt.Errorf("%w; pair the device with this host first, or pass --no-session", err))
		}
		if err != nil {
			return step("read pair record", err)
		}
		if _, err := lc.StartSession(ctx, rec); err != nil {
			if errors.Is(err, lockdown.ErrInvalidHostID) {
				err = fmt.Errorf("%w (the device no longer trusts this host's pair record)", err)
			}
			return step("StartSession", err)
		}
	}
	v, err := lc.GetValue(ctx, *domain, *key)
	if err != nil {
		return step("GetValue", err)
	}
	if *asJSON {
		return writeJSON(a.stdout, plistJSON(v))
	}
	return writeValue(a.stdout, v, 0)
}

// findDevice picks the device to talk to: the one matching udid (dashes
// and case ignored, USB preferred when it is listed twice, as pmd3 does),
// or the only attached device when udid is empty.
func findDevice(ctx context.Context, mux *usbmux.Client, udid string) (usbmux.Device, error) {
	devs, err := mux.ListDevices(ctx)
	if err != nil {
		return usbmux.Device{}, fmt.Errorf("list devices: %w", err)
	}
	if udid == "" {
		udids := map[string]bool{}
		for _, d := range devs {
			udids[strings.ToUpper(strings.ReplaceAll(d.SerialNumber, "-", ""))] = true
		}
		switch len(udids) {
		case 0:
			return usbmux.Device{}, errors.New("no device attached")
		case 1:
			udid = devs[0].SerialNumber
		default:
			return usbmux.Device{}, fmt.Errorf("%d devices attached; choose one with --udid", len(udids))
		}
	}
	var found *usbmux.Device
	for i := range devs {
		d := &devs[i]
		if !usbmux.SameUDID(d.SerialNumber, udid) {
			continue
		}
		if found == nil || d.ConnectionType == usbmux.ConnectionUSB && found.ConnectionType != usbmux.ConnectionUSB {
			found = d
		}
	}
	if found == nil {
		return usbmux.Device{}, fmt.Errorf("device %s is not attached (usbmuxd at %s lists %d devices)", udid, mux.Addr(), len(devs))
	}
	return *found, nil
}

// plistJSON maps a decoded plist value onto what encoding/json prints
// sensibly: data as base64 text, dates as RFC 3339, non-finite floats as
// text (JSON has no NaN), dictionaries and arrays recursively. Integers
// stay uint64/int64, which encoding/json prints exactly.
func plistJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plistJSON(e)
		}
		return out
	case lockdown.Message:
		return plistJSON(map[string]any(x))
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plistJSON(e)
		}
		return out
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
	}
	return v
}

// writeValue prints v as indented "Key: value" text.
func writeValue(w io.Writer, v any, depth int) error {
	indent := strings.Repeat("  ", depth)
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if err := writeEntry(w, indent, k, x[k], depth); err != nil {
				return err
			}
		}
		return nil
	case []any:
		for i, e := range x {
			if err := writeEntry(w, indent, strconv.Itoa(i), e, depth); err != nil {
				return err
			}
		}
		return nil
	}
	_, err := fmt.Fprintf(w, "%s%s\n", indent, scalarText(v))
	return err
}

func writeEntry(w io.Writer, indent, k string, v any, depth int) error {
	switch v.(type) {
	case map[string]any, []any:
		if _, err := fmt.Fprintf(w, "%s%s:\n", indent, k); err != nil {
			return err
		}
		return writeValue(w, v, depth+1)
	}
	s := scalarText(v)
	if strings.Contains(s, "\n") {
		// Multi-line text (a PEM key) goes below its key, indented.
		pad := indent + "  "
		s = pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
		_, err := fmt.Fprintf(w, "%s%s:\n%s\n", indent, k, s)
		return err
	}
	_, err := fmt.Fprintf(w, "%s%s: %s\n", indent, k, s)
	return err
}

func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		if utf8.Valid(x) && isPrintable(string(x)) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

func isPrintable(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r != '\n' && r != '\r' && r != '\t' && (r < 0x20 || r == 0x7f) {
			return false
		}
	}
	return true
}
