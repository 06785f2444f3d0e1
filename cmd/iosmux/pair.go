package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

func init() {
	register(&command{name: "pair", summary: "pair with an iPhone (RemotePairing); list, forget or import pair records", run: runPair})
}

const pairHelp = `
Pairs this computer with an iPhone in one shot: if a pair record for the
device already verifies, says so and exits 0; otherwise asks the device to
trust this computer (tap Trust on the iPhone and enter its passcode), saves the
new record, reconnects and checks it.

Connections:
  (none)                     USB through usbmuxd: the lockdown service
                             com.apple.dt.remotepairingdeviced.lockdown, which
                             pairs without a prompt; needs the classic lockdown
                             pairing (usbmuxd's pair record) to exist already
  --rsd HOST PORT            the device's RemoteServiceDiscovery port (USB
                             link, port 58783); pairs through its tunnel service
  --remotepairing HOST PORT  a network pairing port (_remotepairing._tcp or
                             _remotepairing-manual-pairing._tcp); an Apple TV or
                             Vision Pro shows a PIN: pass it with --pin or type it

Records are pymobiledevice3's (remote_<identifier>.plist, mode 0600) in
--pair-records DIR, env IOSMUX_PAIR_RECORDS, default ~/.pymobiledevice3 (the
invoking user's under sudo), so either tool can use them.

Subcommands:
  iosmux pair list [--json]                 list the records
  iosmux pair forget ID                     delete a record
  iosmux pair import --go-ios DIR [UDID...] convert go-ios's pair records`

// pairTwoValueFlags take HOST PORT; package flag cannot express that.
var pairTwoValueFlags = []string{"rsd", "remotepairing"}

// splitTwoValueFlags pulls "--name A B" out of args for each name.
func splitTwoValueFlags(args []string, names []string) (map[string][2]string, []string, error) {
	found := map[string][2]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		name, matched := "", false
		for _, n := range names {
			if args[i] == "--"+n || args[i] == "-"+n {
				name, matched = n, true
			}
		}
		if !matched {
			rest = append(rest, args[i])
			continue
		}
		if i+2 >= len(args) {
			return nil, nil, fmt.Errorf("--%s needs HOST and PORT", name)
		}
		found[name] = [2]string{args[i+1], args[i+2]}
		i += 2
	}
	return found, rest, nil
}

func runPair(ctx context.Context, a *app, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "list":
			return runPairList(ctx, a, args[1:])
		case "forget":
			return runPairForget(ctx, a, args[1:])
		case "import":
			return runPairImport(ctx, a, args[1:])
		}
	}
	fs := newFlags(a, "pair", "[--udid U] [--rsd HOST PORT | --remotepairing HOST PORT [--pin PIN]] [--timeout D] [--json]", pairHelp)
	udid := fs.String("udid", "", "the device's UDID: picks the USB device, is checked against RSD, names the record of a network pairing")
	muxAddr := fs.String("usbmux-address", "", usbmuxAddressHelp)
	pin := fs.String("pin", "", "the PIN the device shows (network pairing)")
	timeout := fs.Duration("timeout", 3*time.Minute, "time allowed for the whole pairing, including the user tapping Trust")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	recordsDir := fs.String("pair-records", "", "pair record folder (env IOSMUX_PAIR_RECORDS, default ~/.pymobiledevice3)")
	stateDir := fs.String("state-dir", "", "directory holding the host's RSD UUID (env IOSMUX_STATE_DIR)")
	fs.Bool("rsd", false, "HOST PORT: pair through the device's RSD tunnel service (two arguments)")
	fs.Bool("remotepairing", false, "HOST PORT: pair over the network pairing port (two arguments)")
	two, rest, err := splitTwoValueFlags(args, pairTwoValueFlags)
	if err != nil {
		fmt.Fprintf(a.stderr, "iosmux pair: %v\n", err)
		return errUsage
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	rsdAddr, viaRSD := two["rsd"]
	rpAddr, viaRP := two["remotepairing"]
	if fs.NArg() != 0 || viaRSD && viaRP {
		if viaRSD && viaRP {
			fmt.Fprintln(a.stderr, "iosmux pair: give at most one of --rsd HOST PORT and --remotepairing HOST PORT")
		}
		fs.Usage()
		return errUsage
	}
	dir, err := pairRecordsDir(a, *recordsDir)
	if err != nil {
		return err
	}
	hostName, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("host name: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	// The prompt goes where the user looks; with --json stdout is data.
	msgs := a.stdout
	if *asJSON {
		msgs = a.stderr
	}
	cfg := &pairing.PairConfig{
		Host: pairing.HostConfig{
			HostName: hostName,
			Logger:   a.log,
			AwaitingConsent: func() {
				fmt.Fprintln(msgs, "Tap Trust on the iPhone and enter its passcode")
			},
		},
		Store: pairingStore(a, dir),
	}
	var target string
	switch {
	case !viaRSD && !viaRP:
		mux, err := newUsbmuxClient(a, *muxAddr)
		if err != nil {
			return err
		}
		dev, err := findDevice(ctx, mux, *udid)
		if err != nil {
			return err
		}
		target = "USB " + dev.UDID()
		st, err := newLockdownStarter(ctx, mux, dev)
		if err != nil {
			return fmt.Errorf("device %s: %w", dev.UDID(), err)
		}
		cfg.Host.Lockdown = true
		cfg.Dial = func(ctx context.Context) (pairing.Transport, error) { return pairing.DialLockdown(ctx, st) }
	case viaRSD:
		target = "RSD " + net.JoinHostPort(rsdAddr[0], rsdAddr[1])
		closeRSD, err := rsdPairingDial(ctx, a, cfg, rsdAddr, *udid, *stateDir)
		if err != nil {
			return fmt.Errorf("device at %s: %w", target, err)
		}
		defer closeRSD()
	case viaRP:
		target = net.JoinHostPort(rpAddr[0], rpAddr[1])
		addr := target
		target = "RemotePairing " + target
		if _, err := strconv.ParseUint(rpAddr[1], 10, 16); err != nil {
			fmt.Fprintf(a.stderr, "iosmux pair: bad port %q\n", rpAddr[1])
			return errUsage
		}
		cfg.Identifier = *udid
		cfg.Dial = func(ctx context.Context) (pairing.Transport, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return pairing.NewRPPairing(nc), nil
		}
		cfg.Host.PIN = func(context.Context) (string, error) {
			if *pin != "" {
				return *pin, nil
			}
			return promptPIN(msgs, os.Stdin)
		}
	}

	res, err := pairing.Pair(ctx, cfg)
	if err != nil {
		return pairFailure(target, res, err)
	}
	return printPairResult(a, res, *asJSON)
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
func rsdPairingDial(ctx context.Context, a *app, cfg *pairing.PairConfig, hp [2]string, udid, stateDir string) (func(), error) {
	if _, err := strconv.ParseUint(hp[1], 10, 16); err != nil {
		return nil, fmt.Errorf("bad port %q", hp[1])
	}
	sdir, err := rsdStateDir(a, stateDir)
	if err != nil {
		return nil, err
	}
	hostID, err := rsd.LoadOrCreateHostUUID(sdir)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(hp[0], hp[1])
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
	svcAddr := net.JoinHostPort(hp[0], strconv.Itoa(int(svc.Port)))
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
	if su := a.getenv("SUDO_USER"); su != "" {
		if u, err := user.Lookup(su); err == nil && u.HomeDir != "" {
			return filepath.Join(u.HomeDir, pairing.RecordDirName), nil
		}
	}
	home := a.getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("no home folder for pair records: set --pair-records or IOSMUX_PAIR_RECORDS: %w", err)
		}
	}
	return filepath.Join(home, pairing.RecordDirName), nil
}

// addRecordsFlag adds --pair-records to a subcommand's flags.
func addRecordsFlag(fs *flag.FlagSet) *string {
	return fs.String("pair-records", "", "pair record folder (env IOSMUX_PAIR_RECORDS, default ~/.pymobiledevice3)")
}
