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
	"github.com/spf13/cobra"
)

const infoHelp = `
Reads lockdownd values of a device attached through usbmuxd, like
'ideviceinfo': by default the whole top-level domain, inside a TLS session
opened with the pair record usbmuxd holds for the device; a device without
one is paired first (tap Trust on the iPhone), unless --no-autopair.
--domain and --key narrow the query. --no-session reads without a session
(no pairing needed), which gives the reduced set a device shows to unpaired
hosts.

--json prints the value as JSON: data as base64, dates as RFC 3339 text,
integers exact. Without --json, dictionaries print one "Key: value" per line,
nested ones indented, and data that is text (PEM keys) prints as text.

--udid may be left out when exactly one device is attached. The usbmuxd
address is chosen as for 'iosmux list'.`

type infoOptions struct {
	udid, domain, key, muxAddr string
	noSession, asJSON          bool
	noAutopair                 bool
	timeout                    time.Duration
}

func newInfoCmd(a *app) *cobra.Command {
	var o infoOptions
	cmd := &cobra.Command{
		Use:     "info",
		Short:   "print a device's lockdown values (like ideviceinfo)",
		Long:    infoHelp,
		Example: "  iosmux info\n  iosmux info --udid 00008110-001A2B3C4D5E6F70 --key ProductVersion\n  iosmux info --domain com.apple.disk_usage --json\n  iosmux info --no-session",
		RunE:    func(cmd *cobra.Command, args []string) error { return runInfo(cmd.Context(), a, o) },
	}
	addUDIDFlag(cmd, &o.udid, "")
	f := cmd.Flags()
	f.StringVar(&o.domain, "domain", "", "lockdown domain to query (default: the top level)")
	f.StringVar(&o.key, "key", "", "single key to query (default: the whole domain)")
	f.BoolVar(&o.noSession, "no-session", false, "query without a session (no pair record needed)")
	addAutopairFlag(cmd, &o.noAutopair)
	addJSONFlag(cmd, &o.asJSON, "the value")
	addUsbmuxFlag(cmd, &o.muxAddr)
	addTimeoutFlag(cmd, &o.timeout, 15*time.Second, "for the query (pairing a new device has its own "+pairTimeout.String()+")")
	cmd.AddCommand(newInfoDisplayCmd(a))
	return cmd
}

func runInfo(ctx context.Context, a *app, o infoOptions) error {
	mux, err := newUsbmuxClient(a, o.muxAddr)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, o.timeout)
	dev, err := a.findDevice(fctx, mux, o.udid)
	cancel()
	if err != nil {
		return err
	}
	name := dev.UDID()
	step := func(what string, err error) error { return fmt.Errorf("device %s: %s: %w", name, what, err) }

	var rec *lockdown.PairRecord
	if !o.noSession {
		// Before the query's own connection, on its own clock: the user
		// may take a while to tap Trust.
		if rec, _, err = ensurePaired(ctx, a, mux, dev, o.noAutopair, a.stderr); err != nil {
			return err
		}
	}
	ctx, cancel = context.WithTimeout(ctx, o.timeout)
	defer cancel()

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
	if rec != nil {
		if _, err := lc.StartSession(ctx, rec); err != nil {
			if errors.Is(err, lockdown.ErrInvalidHostID) {
				err = fmt.Errorf("%w (the device no longer trusts this host's pair record)", err)
			}
			return step("StartSession", err)
		}
	}
	v, err := lc.GetValue(ctx, o.domain, o.key)
	if err != nil {
		return step("GetValue", err)
	}
	if o.asJSON {
		return writeJSON(a.stdout, plistJSON(v))
	}
	return writeValue(a.stdout, v, 0)
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
