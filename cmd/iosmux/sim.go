package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunnel"
)

func init() {
	register(&command{name: "sim", summary: "run simulated iPhones behind a simulated usbmuxd (no hardware needed)", run: runSim})
}

const simHelp = `
Runs N simulated iPhones (package sim) until SIGINT/SIGTERM: a usbmuxd
UNIX socket listing them all (lockdown, CoreDeviceProxy from iOS 17.4), per
device an untrusted RSD with the RemotePairing tunnel service and network
RemotePairing (RPPairing) on 127.0.0.1, optionally the USB-NCM and Wi-Fi
links in a network namespace with mDNS (--ncm, --wifi; Linux, root), and a
trusted RSD inside every tunnel. It prints each device's endpoints, then
serves a control endpoint for faults:

  curl -X POST $CONTROL/devices/<udid|all>/unplug      (replug, reboot?down=5s,
       stall?on=true, reset?after=0, garbage?on=true, trust?answer=deny)

Point clients at the devices with USBMUXD_SOCKET_ADDRESS=UNIX:<socket>.
With --state-dir, identities, keys and pairings survive restarts.

Profiles: 17.0 (no CoreDeviceProxy), 17.4, 18.2 (no QUIC), 27.2 (RSD peer
re-attach), or any iOS version from 17.0.`

func runSim(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "sim", "[flags]", simHelp)
	count := fs.Int("count", 1, "number of devices")
	profile := fs.String("profile", sim.DefaultProfile, "iOS profile: "+strings.Join(sim.Profiles, ", ")+" or another version ≥ 17.0")
	stateDir := fs.String("state-dir", "", "keep identities, keys and pairings here (and the usbmuxd socket, unless --socket)")
	seed := fs.String("seed", sim.DefaultSeed, "seed the identities derive from")
	socket := fs.String("socket", "", "usbmuxd UNIX socket path (default: <state-dir>/usbmuxd or a temporary directory)")
	control := fs.String("control", "127.0.0.1:0", "control endpoint: host:port or unix:/path; \"none\" disables it")
	loopback := fs.Bool("loopback", true, "serve each device's untrusted RSD and network pairing on 127.0.0.1")
	ncm := fs.Bool("ncm", false, "emulate USB-NCM: each device in its own network namespace, a veth link per device (Linux, root)")
	wifi := fs.Bool("wifi", false, "with --ncm, add a Wi-Fi link per device with _remotepairing._tcp")
	realism := fs.String("realism", "ideal", "ideal, or usb2 (drops above 8 KiB under load, one packet per read, 40 MB/s)")
	linkRate := fs.Int64("link-rate", -1, "cap each device's USB link in bytes/s per direction (overrides --realism; 0 = none)")
	dropAbove := fs.Int("drop-above", -1, "drop host→device tunnel packets above this size after 4 MiB (overrides --realism; 0 = never)")
	boundary := fs.String("boundary", "", "tunnel read mode: stream, drop or break (overrides --realism)")
	undashed := fs.Bool("undashed-serial", false, "report UDIDs without the dash in usbmuxd, as Linux usbmuxd does")
	trust := fs.String("trust", "accept", "answer to Trust dialogs: accept, deny or pending")
	jsonOut := fs.Bool("json", false, "print the endpoints as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *count < 1 {
		fs.Usage()
		return errUsage
	}
	prof, err := sim.ParseProfile(*profile)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var real sim.Realism
	switch *realism {
	case "ideal":
	case "usb2":
		real = sim.USB2
	default:
		return fmt.Errorf("%w: --realism %q: want ideal or usb2", errUsage, *realism)
	}
	if *linkRate >= 0 {
		real.LinkRate = *linkRate
	}
	if *dropAbove >= 0 {
		real.DropAbove, real.DropAfter = *dropAbove, 4<<20
	}
	if *boundary != "" {
		m, ok := map[string]tunnel.BoundaryMode{"stream": tunnel.BoundaryStream, "drop": tunnel.BoundaryDrop, "break": tunnel.BoundaryBreak}[*boundary]
		if !ok {
			return fmt.Errorf("%w: --boundary %q: want stream, drop or break", errUsage, *boundary)
		}
		real.Boundary = m
	}
	tr, err := sim.ParseTrust(*trust)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg := sim.FleetConfig{Count: *count, Seed: *seed, Profile: prof, StateDir: *stateDir, SocketPath: *socket,
		Loopback: *loopback, UndashedSerial: *undashed, Realism: real, Trust: tr, Logger: a.log}
	if *ncm {
		cfg.NCM = &sim.NCMConfig{WiFi: *wifi}
	} else if *wifi {
		return fmt.Errorf("%w: --wifi needs --ncm", errUsage)
	}
	start := time.Now()
	f, err := sim.StartFleet(cfg)
	if err != nil {
		return fmt.Errorf("starting %d simulated devices: %w", *count, err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			a.log.Error("sim: shutting down", "err", err)
		}
	}()
	out := f.Endpoints()
	if *control != "none" {
		c, err := f.ServeControl(*control)
		if err != nil {
			return err
		}
		defer c.Close()
		out.Control = c.Addr()
	}
	a.log.Info("sim: devices up", "count", *count, "profile", prof.Name, "took", time.Since(start).Round(time.Millisecond))
	if *jsonOut {
		if err := writeJSON(a.stdout, out); err != nil {
			return err
		}
	} else {
		printSim(a, out)
	}
	<-ctx.Done()
	a.log.Info("sim: stopping")
	return nil
}

func printSim(a *app, e sim.FleetEndpoints) {
	fmt.Fprintf(a.stdout, "usbmuxd:  %s   (USBMUXD_SOCKET_ADDRESS=UNIX:%s)\n", e.UsbmuxSocket, e.UsbmuxSocket)
	if e.Control != "" {
		fmt.Fprintf(a.stdout, "control:  %s\n", e.Control)
	}
	fmt.Fprintln(a.stdout)
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "UDID\tMODEL\tIOS\tUNTRUSTED RSD\tNETWORK PAIRING\tNCM")
	for _, d := range e.Devices {
		ncm := "-"
		if d.NCM != nil && d.NCM.UntrustedRSD != "" {
			ncm = d.NCM.UntrustedRSD
		}
		fmt.Fprintf(w, "%s\t%s\t%s (%s)\t%s\t%s\t%s\n", d.UDID, d.ProductType, d.OSVersion, d.BuildVersion,
			dash(d.UntrustedRSD), dash(d.NetworkPairing), ncm)
	}
	w.Flush()
}
