package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
	"github.com/spf13/cobra"
)

const pairHelp = `
Pairs this computer with an iPhone in one shot: if a pair record for the
device already verifies, says so and exits 0; otherwise asks the device to
trust this computer (tap Trust on the iPhone and enter its passcode), saves the
new record, reconnects and checks it.

Connections:
  (none)                     USB through usbmuxd: the lockdown service
                             com.apple.dt.remotepairingdeviced.lockdown, which
                             pairs without a prompt; it needs the classic
                             lockdown pairing (usbmuxd's pair record), which is
                             made first when missing (the Trust dialog) unless
                             --no-autopair; see 'iosmux lockdown'.
  --rsd HOST PORT            the device's RemoteServiceDiscovery port (USB
                             link, port 58783); pairs through its tunnel service
  --remotepairing HOST PORT  a network pairing port (_remotepairing._tcp or
                             _remotepairing-manual-pairing._tcp); an Apple TV or
                             Vision Pro shows a PIN: pass it with --pin or type it

HOST PORT may also be written HOST:PORT or [IPv6]:PORT.

Records are pymobiledevice3's (remote_<identifier>.plist, mode 0600) in
--pair-records DIR, env IOSMUX_PAIR_RECORDS, default ~/.pymobiledevice3 (the
invoking user's under sudo), so either tool can use them.`

type pairOptions struct {
	udid, muxAddr, pin, recordsDir, stateDir string
	timeout                                  time.Duration
	asJSON, noAutopair                       bool
	rsd, remotepairing                       hostPortValue
}

func newPairCmd(a *app) *cobra.Command {
	var o pairOptions
	cmd := &cobra.Command{
		Use:   "pair [--udid U] [--rsd HOST PORT | --remotepairing HOST PORT [--pin PIN]]",
		Short: "pair with an iPhone (RemotePairing); list, forget or import pair records",
		Long:  pairHelp,
		Example: `  iosmux pair --udid 00008110-001A2B3C4D5E6F70
  iosmux pair --rsd fd7b:e5b:6f53::1 58783
  iosmux pair --remotepairing 192.168.2.20 49152 --pin 123456
  iosmux pair list`,
		RunE: func(cmd *cobra.Command, args []string) error { return runPair(cmd.Context(), a, o) },
	}
	f := cmd.Flags()
	addUDIDFlag(cmd, &o.udid, "the device's UDID: picks the USB device, is checked against RSD, names the record of a network pairing")
	f.Var(&o.rsd, "rsd", "pair through the device's RSD tunnel service (USB-NCM link, port 58783)")
	f.Var(&o.remotepairing, "remotepairing", "pair over a network pairing port (_remotepairing._tcp)")
	f.StringVar(&o.pin, "pin", "", "the PIN the device shows (network pairing)")
	addTimeoutFlag(cmd, &o.timeout, 3*time.Minute, "for the whole pairing, including the user tapping Trust")
	addJSONFlag(cmd, &o.asJSON, "the result")
	addAutopairFlag(cmd, &o.noAutopair)
	addRecordsFlag(cmd, &o.recordsDir)
	addStateDirFlag(cmd, &o.stateDir)
	addUsbmuxFlag(cmd, &o.muxAddr)
	cmd.AddCommand(newPairListCmd(a), newPairForgetCmd(a), newPairImportCmd(a))
	return cmd
}

func runPair(ctx context.Context, a *app, o pairOptions) error {
	viaRSD, viaRP := o.rsd.given(), o.remotepairing.given()
	if viaRSD && viaRP {
		return usagef("give at most one of --rsd HOST PORT and --remotepairing HOST PORT")
	}
	dir, err := pairRecordsDir(a, o.recordsDir)
	if err != nil {
		return err
	}
	hostName, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("host name: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	// The prompt goes where the user looks; with --json stdout is data.
	msgs := a.stdout
	if o.asJSON {
		msgs = a.stderr
	}
	cfg := &pairing.PairConfig{
		Host: pairing.ClientConfig{
			HostName: hostName,
			Logger:   a.log,
			AwaitingConsent: func() {
				fmt.Fprintln(msgs, trustPrompt)
			},
		},
		Store: pairingStore(a, dir),
	}
	var target string
	switch {
	case !viaRSD && !viaRP:
		mux, err := newUsbmuxClient(a, o.muxAddr)
		if err != nil {
			return err
		}
		dev, err := a.findDevice(ctx, mux, o.udid)
		if err != nil {
			return err
		}
		target = "USB " + dev.UDID()
		rec, _, err := ensurePaired(ctx, a, mux, dev, o.noAutopair, msgs)
		if err != nil {
			return err
		}
		st := &lockdown.UsbmuxServices{Mux: mux, Device: dev, Record: rec}
		cfg.Host.Lockdown = true
		cfg.Dial = func(ctx context.Context) (pairing.Transport, error) { return pairing.DialLockdown(ctx, st) }
	case viaRSD:
		target = "RSD " + o.rsd.addr()
		closeRSD, err := rsdPairingDial(ctx, a, cfg, &o.rsd, o.udid, o.stateDir)
		if err != nil {
			return fmt.Errorf("device at %s: %w", target, err)
		}
		defer closeRSD()
	case viaRP:
		addr := o.remotepairing.addr()
		target = "RemotePairing " + addr
		cfg.Identifier = o.udid
		cfg.Dial = func(ctx context.Context) (pairing.Transport, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return pairing.NewRPPairing(nc), nil
		}
		cfg.Host.PIN = func(context.Context) (string, error) {
			if o.pin != "" {
				return o.pin, nil
			}
			return promptPIN(msgs, os.Stdin)
		}
	}

	res, err := pairing.Pair(ctx, cfg)
	if err != nil {
		return pairFailure(target, res, err)
	}
	return printPairResult(a, res, o.asJSON)
}

// pairFailure turns the common failures into sentences that say what to do.
func pairFailure(target string, res *pairing.PairResult, err error) error {
	who := "device at " + target
	if res != nil && res.ID != "" {
		who = fmt.Sprintf("device %s at %s", res.ID, target)
	}
	var rej *pairing.RejectedError
	var pe *pairing.Error
	switch {
	case errors.As(err, &rej):
		msg := "the iPhone refused to pair: Don't Trust was tapped"
		if rej.Description != "" {
			msg += " (" + rej.Description + ")"
		}
		return fmt.Errorf("%s: %s; run 'iosmux pair' again and tap Trust", who, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: timed out (no answer to the Trust dialog? see --timeout): %w", who, err)
	case errors.As(err, &pe) && pe.Step == pairing.StepSetupM4 && errors.Is(err, pairing.ErrAuthentication):
		return fmt.Errorf("%s: wrong PIN: %w", who, err)
	}
	return fmt.Errorf("%s: %w", who, err)
}

// rsdPairingDial reads the RSD Handshake, finds the tunnel service and sets
// cfg.Dial to open RemoteXPC connections to it. The RSD connection stays
// open until the returned func is called.
func rsdPairingDial(ctx context.Context, a *app, cfg *pairing.PairConfig, hp *hostPortValue, udid, stateDir string) (func(), error) {
	sdir, err := rsdStateDir(a, stateDir)
	if err != nil {
		return nil, err
	}
	hostID, err := loadHostUUID(a, sdir)
	if err != nil {
		return nil, err
	}
	addr := hp.addr()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rsd: connect: %w", err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: hostID, XPC: &xpc.Config{Name: "rsd " + addr, Logger: a.log}})
	if err != nil {
		return nil, err
	}
	dev := c.Handshake.Device()
	if udid != "" && !strings.EqualFold(udid, dev.UDID) {
		c.Close()
		return nil, fmt.Errorf("rsd: this is device %s, not %s", dev.UDID, udid)
	}
	svc, ok := c.Handshake.Service(pairing.TunnelServiceName)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("rsd: device %s lists no %s", dev.UDID, pairing.TunnelServiceName)
	}
	svcAddr := net.JoinHostPort(hp.host, strconv.Itoa(int(svc.Port)))
	cfg.Dial = func(ctx context.Context) (pairing.Transport, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", svcAddr)
		if err != nil {
			return nil, fmt.Errorf("tunnel service: connect: %w", err)
		}
		xc, err := xpc.Client(ctx, nc, &xpc.Config{Name: "tunnelservice " + svcAddr, Logger: a.log})
		if err != nil {
			return nil, err
		}
		return pairing.NewXPC(xc), nil
	}
	return func() { c.Close() }, nil
}

// promptPIN asks for the PIN on the terminal. The read is not bounded by
// the timeout: someone is typing.
func promptPIN(w io.Writer, r io.Reader) (string, error) {
	fmt.Fprint(w, "Enter the PIN shown on the device: ")
	s, err := bufio.NewReader(r).ReadString('\n')
	if s = strings.TrimSpace(s); s == "" {
		return "", fmt.Errorf("no PIN entered: %w", err)
	}
	return s, nil
}

type pairJSON struct {
	Identifier    string `json:"identifier"`
	UDID          string `json:"udid,omitempty"`
	Name          string `json:"name,omitempty"`
	Model         string `json:"model,omitempty"`
	AlreadyPaired bool   `json:"already_paired"`
	Record        string `json:"record"`
	UnlockKey     bool   `json:"remote_unlock_key"`
}

func printPairResult(a *app, res *pairing.PairResult, asJSON bool) error {
	d := res.Device.Device
	if asJSON {
		return writeJSON(a.stdout, pairJSON{
			Identifier: res.ID, UDID: d.UDID, Name: d.Name, Model: d.Model,
			AlreadyPaired: res.AlreadyPaired, Record: res.Path,
			UnlockKey: !res.AlreadyPaired && res.UnlockKeyErr == nil,
		})
	}
	name := d.Name
	if name == "" {
		name = res.ID
	}
	if res.AlreadyPaired {
		_, err := fmt.Fprintf(a.stdout, "Already paired with %s (%s): the record %s verifies.\n", name, res.ID, res.Path)
		return err
	}
	fmt.Fprintf(a.stdout, "Paired with %s (%s). Record saved to %s\n", name, res.ID, res.Path)
	if res.UnlockKeyErr != nil {
		fmt.Fprintf(a.stdout, "Note: the device gave no remote unlock key (%v); tunnels work, locked-device service access may not.\n", res.UnlockKeyErr)
	}
	return nil
}

// pairRecordsDir resolves the record folder: flag, env, then
// ~/.pymobiledevice3 of the invoking user (SUDO_USER's home under sudo, as
// pymobiledevice3 does).
func pairRecordsDir(a *app, flagDir string) (string, error) {
	if flagDir != "" {
		return flagDir, nil
	}
	if d := a.getenv("IOSMUX_PAIR_RECORDS"); d != "" {
		return d, nil
	}
	home, err := invokingHome(a)
	if err != nil {
		return "", fmt.Errorf("no home folder for pair records: set --pair-records or IOSMUX_PAIR_RECORDS: %w", err)
	}
	return filepath.Join(home, pairing.RecordDirName), nil
}
