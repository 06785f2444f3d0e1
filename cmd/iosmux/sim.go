package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/spf13/cobra"
)

const simHelp = `
Runs N simulated iPhones (package sim) until SIGINT/SIGTERM: a usbmuxd
UNIX socket listing them all (lockdown, CoreDeviceProxy from iOS 17.4), per
device an untrusted RSD with the RemotePairing tunnel service and network
RemotePairing (RPPairing) on 127.0.0.1, optionally the USB-NCM and Wi-Fi
links in a network namespace with mDNS (--ncm, --wifi; Linux, root), and a
trusted RSD inside every tunnel. It prints each device's endpoints, then
serves a control endpoint for faults:

  curl -X POST $CONTROL/devices/<udid|all>/unplug      (replug, reboot?down=5s,
       stall?on=true, reset?after=0, garbage?on=true, trust?answer=deny,
       devmode?on=true, passcode?on=true)

Developer Mode starts off on a new device (--developer-mode starts it on);
'iosmux amfi enable' turns it on, rebooting the device once. The devices
serve the DDI mounter: --tss serves a signing stand-in for them on loopback
(point --tss-url of 'iosmux mounter' at the URL printed), and
--seed-manifest DIR gives every device the manifest for that DDI's image
from the start, so clients that sign at Apple (go-ios) take the offline
branch.

Point clients at the devices with USBMUXD_SOCKET_ADDRESS=UNIX:<socket>.
With --simulate-state DIR, identities, keys and pairings survive restarts
(the same folder 'iosmux tunneld --simulate N --simulate-state DIR' uses).
tunneld's spellings --simulate-profile and --simulate-control work here too.

Device ends (--device-end): netstack (default) gives every device a
userspace TCP/IP stack (gVisor) inside its tunnels, as faithful as the
simulator gets, on any OS and without root. kernel puts each device's
tunnel address in a network namespace of its own, a kernel TUN per
tunnel and its services (RSD, every listed service, the byte sink, source
and echo) on kernel sockets there: several times cheaper per byte, so a
benchmark through the simulator measures the host rather than the
simulated device. It needs Linux and root; the namespaces have no name
and go away with the process, even if it is killed.

Profiles: 17.0 (no CoreDeviceProxy), 17.4, 18.2 (no QUIC), 27.2 (RSD peer
re-attach), or any iOS version from 17.0.`

type simOptions struct {
	count                           int
	profile, stateDir, seed, socket string
	control                         string
	loopback, ncm, wifi, undashed   bool
	realism, boundary, trust        string
	deviceEnd                       string
	linkRate                        int64
	dropAbove                       int
	asJSON                          bool
	tss                             string
	seedManifests                   []string
	developerMode, passcode         bool
	logRate                         float64
	tlsSuites                       string
}

// profileFlag adds --name taking a sim profile: one of sim.Profiles or
// another iOS version from 17.0.
func profileFlag(cmd *cobra.Command, p *string, name, usage string) {
	*p = sim.DefaultProfile
	cmd.Flags().Var(&checkedValue{p: p, typ: "VERSION", choices: sim.Profiles, check: func(s string) error {
		if _, err := sim.ParseProfile(s); err != nil {
			return fmt.Errorf("want %s, or another iOS version from 17.0", strings.Join(sim.Profiles, ", "))
		}
		return nil
	}}, name, usage+": "+strings.Join(sim.Profiles, ", ")+" or another iOS version from 17.0")
	cmd.RegisterFlagCompletionFunc(name, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return sim.Profiles, cobra.ShellCompDirectiveNoFileComp
	})
}

// addSimulateFlags adds the flags tunneld and backend share for their
// simulated devices: --simulate [N], --simulate-state, --simulate-profile.
func addSimulateFlags(cmd *cobra.Command, n *int, state, profile *string, lo, hi int, usage string) {
	countFlag(cmd, n, "simulate", lo, hi, usage+"; --simulate alone is 1")
	cmd.Flags().StringVar(state, "simulate-state", "", "where the simulated devices keep their identities and pairings, `DIR` (default <state dir>/sim)")
	profileFlag(cmd, profile, "simulate-profile", "iOS profile of the simulated devices")
}

func newSimCmd(a *app) *cobra.Command {
	var o simOptions
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "run simulated iPhones behind a simulated usbmuxd (no hardware needed)",
		Long:  simHelp,
		Example: `  iosmux sim --count 4
  iosmux sim --profile 17.4 --simulate-state ./simstate --json
  sudo iosmux sim --ncm --wifi --trust deny
  sudo iosmux sim --count 16 --device-end kernel
  iosmux sim --tls-suites cbc`,
		RunE: func(cmd *cobra.Command, args []string) error { return runSim(cmd.Context(), a, o) },
	}
	f := cmd.Flags()
	intFlag(cmd, &o.count, "count", 1, 1, 1000, "number of devices")
	profileFlag(cmd, &o.profile, "profile", "iOS profile")
	aliasFlag(cmd, "simulate-profile", "profile", false)
	f.StringVar(&o.stateDir, "simulate-state", "", "keep identities, keys and pairings in `DIR` (and the usbmuxd socket, unless --socket); default: a temporary folder")
	aliasFlag(cmd, "state-dir", "simulate-state", true)
	f.StringVar(&o.seed, "seed", sim.DefaultSeed, "seed the identities derive from")
	f.StringVar(&o.socket, "socket", "", "usbmuxd UNIX socket `PATH` (default: <simulate-state>/usbmuxd or a temporary folder)")
	f.StringVar(&o.control, "control", "127.0.0.1:0", "control endpoint: HOST:PORT or unix:/path; \"none\" disables it")
	aliasFlag(cmd, "simulate-control", "control", false)
	f.BoolVar(&o.loopback, "loopback", true, "serve each device's untrusted RSD and network pairing on 127.0.0.1")
	f.BoolVar(&o.ncm, "ncm", false, "emulate USB-NCM: each device in its own network namespace, a veth link per device (Linux, root)")
	f.BoolVar(&o.wifi, "wifi", false, "with --ncm, add a Wi-Fi link per device with _remotepairing._tcp")
	enumFlag(cmd, &o.realism, "realism", "", "ideal", []string{"ideal", "usb2"}, "link model: ideal, or usb2 (drops above 8 KiB under load, one packet per read, 40 MB/s)")
	f.Int64Var(&o.linkRate, "link-rate", -1, "cap each device's USB link in bytes/s per direction (overrides --realism; 0 = none)")
	f.IntVar(&o.dropAbove, "drop-above", -1, "drop host→device tunnel packets above this size after 4 MiB (overrides --realism; 0 = never)")
	enumFlag(cmd, &o.boundary, "boundary", "", "", []string{"stream", "drop", "break"}, "tunnel read mode (overrides --realism)")
	deviceEndFlag(cmd, &o.deviceEnd, "device-end")
	f.BoolVar(&o.undashed, "undashed-serial", false, "report UDIDs without the dash in usbmuxd, as Linux usbmuxd does")
	enumFlag(cmd, &o.trust, "trust", "", "accept", []string{"accept", "deny", "pending"}, "answer to Trust dialogs")
	f.StringVar(&o.tss, "tss", "127.0.0.1:0", "serve the DDI signing stand-in at `HOST:PORT` (loopback); \"none\" disables it")
	f.StringArrayVar(&o.seedManifests, "seed-manifest", nil, "give every device a manifest for the image of the DDI in `DIR` (repeatable)")
	f.BoolVar(&o.developerMode, "developer-mode", false, "start new devices with Developer Mode on")
	f.BoolVar(&o.passcode, "passcode", false, "the devices have a passcode (they refuse to arm Developer Mode)")
	o.tlsSuites = "aead"
	f.Var(&checkedValue{p: &o.tlsSuites, typ: "SUITES", choices: []string{"aead", "cbc"}, check: func(s string) error {
		_, err := sim.ParseTLSSuites(s)
		return err
	}}, "tls-suites", "the devices' TLS-PSK tunnel suite preference: aead (AES-GCM, ChaCha20-Poly1305, then CBC), cbc (AES-256-CBC-SHA384 first, a device preferring CBC), or a comma list of suite names or hex ids")
	f.Float64Var(&o.logRate, "log-rate", 0, "each device's background log chatter in `LINES` per second (0: only the device's own events)")
	addJSONFlag(cmd, &o.asJSON, "the endpoints")
	return cmd
}

func runSim(ctx context.Context, a *app, o simOptions) error {
	if o.wifi && !o.ncm {
		return usagef("--wifi adds a Wi-Fi link next to the USB-NCM one: it needs --ncm")
	}
	prof, err := sim.ParseProfile(o.profile)
	if err != nil {
		return usageErr(err)
	}
	var real sim.Realism
	if o.realism == "usb2" {
		real = sim.USB2
	}
	if o.linkRate >= 0 {
		real.LinkRate = o.linkRate
	}
	if o.dropAbove >= 0 {
		real.DropAbove, real.DropAfter = o.dropAbove, 4<<20
	}
	if o.boundary != "" {
		real.Boundary = map[string]tunnel.BoundaryMode{"stream": tunnel.BoundaryStream, "drop": tunnel.BoundaryDrop, "break": tunnel.BoundaryBreak}[o.boundary]
	}
	if real.TLSSuites, err = sim.ParseTLSSuites(o.tlsSuites); err != nil {
		return usageErr(err)
	}
	tr, err := sim.ParseTrust(o.trust)
	if err != nil {
		return usageErr(err)
	}
	cfg := sim.FleetConfig{Count: o.count, Seed: o.seed, Profile: prof, StateDir: o.stateDir, SocketPath: o.socket,
		Loopback: o.loopback, UndashedSerial: o.undashed, Realism: real, Trust: tr, Logger: a.log,
		DeviceEnd:     sim.DeviceEnd(o.deviceEnd),
		SeedManifests: o.seedManifests, DeveloperMode: o.developerMode, Passcode: o.passcode, LogRate: o.logRate}
	if o.tss != "none" {
		cfg.TSSAddr = o.tss
	}
	if o.ncm {
		cfg.NCM = &sim.NCMConfig{WiFi: o.wifi}
	}
	start := time.Now()
	f, err := sim.StartFleet(cfg)
	if err != nil {
		return fmt.Errorf("starting %d simulated devices: %w", o.count, err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			a.log.Error("sim: shutting down", "err", err)
		}
	}()
	out := f.Endpoints()
	if o.control != "none" {
		c, err := f.ServeControl(o.control)
		if err != nil {
			return err
		}
		defer c.Close()
		out.Control = c.Addr()
	}
	a.log.Info("sim: devices up", "count", o.count, "profile", prof.Name, "took", time.Since(start).Round(time.Millisecond))
	if o.asJSON {
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
	if e.TSS != "" {
		fmt.Fprintf(a.stdout, "tss:      %s   (iosmux mounter auto-mount --tss-url %s)\n", e.TSS, e.TSS)
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

// deviceEndFlag adds --name taking a sim device end (netstack or kernel).
func deviceEndFlag(cmd *cobra.Command, p *string, name string) {
	enumFlag(cmd, p, name, "", sim.DeviceEnds[0], sim.DeviceEnds,
		"what carries each device's end of its tunnels: netstack (userspace, any OS) or kernel (a network namespace and kernel TUNs per device: cheap per byte, for benchmarks; Linux, root)")
}
