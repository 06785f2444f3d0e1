package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/iosmux/iosmux/cmd/iosmux/internal/progress"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/spf13/cobra"
)

// The flags several commands share, one helper each, so a flag means the
// same thing and is spelled the same way everywhere.

func addJSONFlag(cmd *cobra.Command, p *bool, what string) {
	cmd.Flags().BoolVar(p, "json", false, "print "+what+" as JSON (for scripts)")
}

func addUDIDFlag(cmd *cobra.Command, p *string, usage string) {
	if usage == "" {
		usage = "the device's UDID (dashes and case ignored); without it: the only device attached, or a choice on a terminal"
	}
	cmd.Flags().StringVar(p, "udid", "", usage)
}

const usbmuxAddressHelp = "usbmuxd address: /path, UNIX:/path, HOST:PORT (env PYMOBILEDEVICE3_USBMUX, USBMUXD_SOCKET_ADDRESS; default /var/run/usbmuxd)"

func addUsbmuxFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "usbmux-address", "", usbmuxAddressHelp)
}

func addStateDirFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "state-dir", "", "iosmux's state `DIR`: the host's RSD UUID, the backend's identities, simulated devices (env IOSMUX_STATE_DIR, default ~/.local/state/iosmux)")
}

// addRecordsFlag adds --pair-records.
func addRecordsFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "pair-records", "", "RemotePairing record `DIR` (env IOSMUX_PAIR_RECORDS, default ~/.pymobiledevice3, shared with pymobiledevice3)")
}

func addTimeoutFlag(cmd *cobra.Command, p *time.Duration, def time.Duration, what string) {
	cmd.Flags().DurationVar(p, "timeout", def, "time allowed "+what)
}

// rsdStateDir resolves the state folder: flag, env, XDG, then the invoking
// user's home (SUDO_USER's under sudo, like the pair records: see
// statedir.go).
func rsdStateDir(a *app, flagDir string) (string, error) {
	if flagDir != "" {
		return flagDir, nil
	}
	if d := a.getenv("IOSMUX_STATE_DIR"); d != "" {
		return d, nil
	}
	if d := a.getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "iosmux"), nil
	}
	home, err := invokingHome(a)
	if err != nil {
		return "", fmt.Errorf("no state folder: set --state-dir or IOSMUX_STATE_DIR: %w", err)
	}
	return filepath.Join(home, ".local", "state", "iosmux"), nil
}

// rsdTarget is where a device's trusted RSD is: given (--rsd HOST PORT) or
// looked up in a running tunneld (--tunnel UDID), as pymobiledevice3's
// commands take it. Every command that talks to a device's RSD adds it.
type rsdTarget struct {
	rsd     hostPortValue
	tunnel  string
	tunneld string
	// found is the UDID of the tunnel resolve found in tunneld.
	found string
}

func addRSDTarget(a *app, cmd *cobra.Command) *rsdTarget {
	t := &rsdTarget{}
	f := cmd.Flags()
	f.Var(&t.rsd, "rsd", "the device's RSD: HOST PORT, HOST:PORT or [IPv6]:PORT (what start-tunnel and tunneld print)")
	f.StringVar(&t.tunnel, "tunnel", "", "the device's `UDID`: look its tunnel up in the running tunneld (\"\" = the only one there)")
	f.StringVar(&t.tunneld, "tunneld", "", "tunneld's API for --tunnel, `HOST:PORT` (env IOSMUX_TUNNELD, default 127.0.0.1:49151)")
	return t
}

// given reports whether --rsd or --tunnel was given.
func (t *rsdTarget) given(cmd *cobra.Command) bool {
	return t.rsd.given() || cmd.Flags().Changed("tunnel")
}

// check rejects both at once.
func (t *rsdTarget) check(cmd *cobra.Command) error {
	if t.rsd.given() && cmd.Flags().Changed("tunnel") {
		return usagef("give --rsd or --tunnel, not both")
	}
	return nil
}

// resolve returns the RSD's HOST:PORT.
func (t *rsdTarget) resolve(ctx context.Context, a *app, cmd *cobra.Command) (string, error) {
	if t.rsd.given() {
		return t.rsd.addr(), nil
	}
	api := t.tunneld
	if api == "" {
		api = envOr(a.getenv, "IOSMUX_TUNNELD", rsdapi.DefaultPMD3Addr)
	}
	c := &rsdapi.Client{Addr: api}
	if t.tunnel != "" {
		l, err := c.Find(ctx, t.tunnel)
		if errors.Is(err, rsdapi.ErrNoTunnel) {
			return "", fmt.Errorf("device %s: tunneld at %s has no tunnel to it (is it attached? 'curl http://%s/' lists the tunnels)", t.tunnel, api, api)
		}
		if err != nil {
			return "", fmt.Errorf("device %s: %w (is tunneld running? start it with 'iosmux tunneld')", t.tunnel, err)
		}
		ap, err := l.RSD()
		if err != nil {
			return "", err
		}
		t.found = l.UDID
		return ap.String(), nil
	}
	all, err := c.Tunnels(ctx)
	if err != nil {
		return "", fmt.Errorf("%w (is tunneld running? start it with 'iosmux tunneld')", err)
	}
	udids := map[string]rsdapi.Listed{}
	var order []string
	for _, l := range all {
		if _, ok := udids[l.UDID]; !ok {
			udids[l.UDID] = l
			order = append(order, l.UDID)
		}
	}
	var l rsdapi.Listed
	switch len(order) {
	case 0:
		return "", fmt.Errorf("tunneld at %s has no tunnels yet (is the device attached?)", api)
	case 1:
		l = udids[order[0]]
	default:
		choices := make([]choice, len(order))
		for i, u := range order {
			choices[i] = choice{ID: u, Text: udids[u].Interface}
		}
		i, err := a.choose(fmt.Sprintf("%d devices have tunnels in tunneld at %s", len(order), api), "--tunnel", choices)
		if err != nil {
			return "", err
		}
		l = udids[order[i]]
	}
	ap, err := l.RSD()
	if err != nil {
		return "", err
	}
	t.found = l.UDID
	return ap.String(), nil
}

// choice is one line of a picker.
type choice struct{ ID, Text string }

// choose asks the person at the terminal to pick one of choices; without a
// terminal it fails listing the IDs and the flag that picks one.
func (a *app) choose(what, flag string, choices []choice) (int, error) {
	ids := make([]string, len(choices))
	for i, c := range choices {
		ids[i] = c.ID
	}
	if !a.terminal(a.stdin) || !a.terminal(a.stderr) {
		return 0, fmt.Errorf("%s: %s; choose one with %s", what, strings.Join(ids, ", "), flag)
	}
	fmt.Fprintf(a.stderr, "%s:\n", what)
	for i, c := range choices {
		fmt.Fprintf(a.stderr, "  %d) %s  %s\n", i+1, c.ID, c.Text)
	}
	for {
		fmt.Fprintf(a.stderr, "Choose one [1-%d] (or give %s): ", len(choices), flag)
		line, err := readLine(a.stdin)
		if err != nil {
			return 0, fmt.Errorf("%s: no choice made (%v); choose one with %s", what, err, flag)
		}
		var n int
		if _, err := fmt.Sscanf(line, "%d", &n); err == nil && n >= 1 && n <= len(choices) {
			return n - 1, nil
		}
		for i, c := range choices {
			if strings.EqualFold(strings.TrimSpace(line), c.ID) {
				return i, nil
			}
		}
	}
}

// readLine reads up to a newline, one byte at a time so nothing after it
// is consumed.
func readLine(r interface{ Read([]byte) (int, error) }) (string, error) {
	var b []byte
	var c [1]byte
	for {
		n, err := r.Read(c[:])
		if n == 1 {
			if c[0] == '\n' {
				return string(b), nil
			}
			b = append(b, c[0])
		}
		if err != nil {
			if len(b) > 0 {
				return string(b), nil
			}
			return "", err
		}
	}
}

// progressOut is where progress is drawn: standard error, only on a
// terminal and only when stdout is not data (--json).
func (a *app) progressOut(asJSON bool) progress.Out {
	return progress.Out{W: a.stderr, On: !asJSON && a.terminal(a.stderr)}
}

// wait says what a possibly long wait waits for ("waiting for " + what): a
// spinner on a terminal, else one log line. Call Done on the result when
// the wait ends.
func (a *app) wait(what string, asJSON bool) *progress.Bar {
	out := a.progressOut(asJSON)
	if !out.On {
		a.log.Info("waiting for " + what)
	}
	return out.Wait("waiting for " + what)
}
