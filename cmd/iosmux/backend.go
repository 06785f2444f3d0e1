package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"github.com/spf13/cobra"
	"golang.zx2c4.com/wireguard/tun"
)

const backendHelp = `
Plays the iPhone's side of RemoteXPC/RSD towards macOS CoreDeviceService
(point it at --listen instead of the device's tunnel RSD) and any other RSD
client, and delegates everything to the real device through its tunnel:
the Handshake is the device's (Properties, services), every service port
is a forwarder to the device. The device sees one RSD peer with this
host's stable UUID, whatever the number of clients.

Where the device is (one of):
  --rsd HOST PORT   its trusted RSD inside a kernel tunnel, as iosmux
                    start-tunnel prints it (HOST:PORT and [v6]:PORT work
                    too), or another iosmux backend serving it, such as
                    the one 'tunneld --advertise backend' runs on the host
                    the iPhone is plugged into
  --tunnel UDID     follow the device's tunnel in tunneld's API (--tunneld;
                    kernel TUN mode), re-attaching when it is rebuilt; it
                    says what it waits for until tunneld lists the device
  --simulate        a built-in simulated iPhone behind a userspace tunnel

Clients can also pair with the backend (its own identity per device, kept
in --state-dir) and open tunnels through it: --untrusted serves an
untrusted RSD listing the tunnel service, --pairing serves network pairing
(RPPairing), --mdns advertises them (_remoted._tcp, _remotepairing._tcp)
on the named interfaces. Pairing requests are accepted without asking:
anyone who reaches those ports can reach the device.

--wire-log FILE records every HTTP/2 frame and XPC message of every
connection as JSON lines (rotated at --wire-log-size MiB).

With --simulate, the simulated iPhone's DDI signing stand-in is served on
loopback and printed (give it to 'iosmux mounter auto-mount --tss-url').

` + cdsBridgeHelp

// backendOut is what the command prints once serving.
type backendOut struct {
	RSD       string `json:"rsd"`
	Untrusted string `json:"untrusted,omitempty"`
	Pairing   string `json:"pairing,omitempty"`
	UDID      string `json:"udid,omitempty"`
	UUID      string `json:"uuid,omitempty"`
	WireLog   string `json:"wireLog,omitempty"`
	CDSSocket string `json:"cdsSocket,omitempty"`
	TSS       string `json:"tss,omitempty"`
}

type backendOptions struct {
	listen, untrusted, pairingAddr, mdnsIfs string
	target                                  *rsdTarget
	simulate                                int
	simState, simProfile                    string
	stateDir, wireLog                       string
	wireLogSize, wireLogKeep                int
	asJSON                                  bool
	allowClients                            []string
	advertiseAddr                           string
	cds                                     cdsOptions
}

func newBackendCmd(a *app) *cobra.Command {
	var o backendOptions
	cmd := &cobra.Command{
		Use:   "backend (--rsd HOST PORT | --tunnel UDID | --simulate)",
		Short: "serve an iPhone's RSD to CoreDeviceService (and other RSD clients) through iosmux's tunnel",
		Long:  backendHelp,
		Example: `  iosmux backend --tunnel 00008110-001A2B3C4D5E6F70 --listen [::1]:58783
  iosmux backend --rsd fd7b:e5b:6f53::1 64337 --json
  iosmux backend --simulate --untrusted 127.0.0.1:0 --wire-log wire.jsonl
  iosmux backend --rsd 192.168.64.1 50123 --cds-bridge --cds-build $CDS_BUILD`,
		RunE: func(cmd *cobra.Command, args []string) error { return runBackend(cmd.Context(), a, cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "[::1]:0", "RSD address to serve, `HOST:PORT` (give this to CoreDeviceService); beyond loopback anyone who reaches it reaches the device")
	f.StringArrayVar(&o.allowClients, "allow-client", nil, "serve only clients in this `PREFIX` (address or CIDR such as 192.168.1.0/24; repeatable; loopback is always served)")
	f.StringVar(&o.advertiseAddr, "advertise-address", "", "with a wildcard --listen (:: or 0.0.0.0): the `ADDR` clients are told (default: this host's first global address)")
	o.target = addRSDTarget(a, cmd)
	aliasFlag(cmd, "udid", "tunnel", true)
	addSimulateFlags(cmd, &o.simulate, &o.simState, &o.simProfile, 0, 1, "serve a built-in simulated iPhone (userspace tunnel)")
	f.StringVar(&o.untrusted, "untrusted", "", "serve an untrusted RSD (pairing) here, e.g. [::]:58783")
	f.StringVar(&o.pairingAddr, "pairing", "", "serve network pairing (RPPairing) here, e.g. [::]:0")
	f.StringVar(&o.mdnsIfs, "mdns", "", "advertise the pairing surfaces on these interfaces (comma-separated)")
	addStateDirFlag(cmd, &o.stateDir)
	f.StringVar(&o.wireLog, "wire-log", "", "record every frame and XPC message as JSON lines in this `FILE`")
	intFlag(cmd, &o.wireLogSize, "wire-log-size", 64, 1, 1<<20, "MiB at which the wire log rotates")
	intFlag(cmd, &o.wireLogKeep, "wire-log-keep", backend.DefaultWireLogBackups, 1, 1000, "rotated wire logs kept")
	addCDSFlags(cmd, &o.cds)
	addJSONFlag(cmd, &o.asJSON, "the endpoints")
	return cmd
}

func runBackend(ctx context.Context, a *app, cmd *cobra.Command, o backendOptions) error {
	if err := o.target.check(cmd); err != nil {
		return err
	}
	modes := 0
	for _, on := range []bool{o.target.rsd.given(), cmd.Flags().Changed("tunnel"), o.simulate > 0} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		return usagef("give exactly one of --rsd HOST PORT, --tunnel UDID, --simulate")
	}
	if cmd.Flags().Changed("tunnel") && o.target.tunnel == "" {
		return usagef("--tunnel needs the device's UDID here: the backend follows one device")
	}
	bcfg, bridged, err := o.cds.config(cmd)
	if err != nil {
		return err
	}
	var ifs []string
	for _, s := range strings.Split(o.mdnsIfs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ifs = append(ifs, s)
		}
	}
	if len(ifs) > 0 && o.untrusted == "" && o.pairingAddr == "" {
		o.pairingAddr = "[::]:0"
	}
	sdir, err := rsdStateDir(a, o.stateDir)
	if err != nil {
		return err
	}
	hostUUID, err := loadHostUUID(a, sdir)
	if err != nil {
		return err
	}
	allow, err := parsePrefixes("allow-client", o.allowClients)
	if err != nil {
		return err
	}
	advertise, err := parseAdvertise("advertise-address", o.advertiseAddr)
	if err != nil {
		return err
	}
	defer chownBack(a, sdir)
	cfg := backend.Config{Listen: o.listen, Untrusted: o.untrusted, Pairing: o.pairingAddr, MDNS: ifs,
		StateDir: filepath.Join(sdir, "backend"), HostUUID: hostUUID, Logger: a.log,
		AllowClients: allow, Advertise: advertise}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return err
	}
	if o.wireLog != "" {
		wl, err := backend.OpenWireLog(backend.WireLogConfig{Path: o.wireLog, MaxSize: int64(o.wireLogSize) << 20, Backups: o.wireLogKeep})
		if err != nil {
			return err
		}
		defer wl.Close()
		cfg.WireLog = wl
	}
	warnExposed(a, "the backend (trusted RSD and every device service)", o.listen,
		"can reach the device's services", "Use --listen [::1]:0, or restrict clients with --allow-client.")
	for _, addr := range []string{o.untrusted, o.pairingAddr} {
		if addr != "" {
			warnExposed(a, "the backend's pairing", addr, "can pair (nobody is asked) and then reach the device", "Restrict clients with --allow-client.")
		}
	}
	b, err := backend.New(cfg)
	if err != nil {
		return err
	}
	defer b.Close()

	// The simulated iPhone starts before the bridge: its usbmuxd holds
	// the pair record the bridge checks.
	var fleet *sim.Fleet
	if o.simulate > 0 {
		if fleet, err = startBackendSim(a, o, sdir); err != nil {
			return err
		}
		defer fleet.Close()
	}
	if bridged {
		bcfg.StateDir, bcfg.Logger = cfg.StateDir, a.log
		if fleet != nil {
			// The simulated device can forget this host: ask its usbmuxd's
			// pair record, not only the tunnel (docs/xcode.md).
			bcfg.Pairing = backend.UsbmuxPairing{Mux: simMux(fleet)}
		}
		br, err := backend.NewBridge(bcfg)
		if err != nil {
			return err
		}
		defer br.Close()
		br.Add(b)
	}

	out := backendOut{RSD: b.Addr().String(), WireLog: o.wireLog}
	if bridged {
		out.CDSSocket = bcfg.Glob
	}
	if fleet != nil {
		out.TSS = fleet.TSSURL()
	}
	if u := b.UntrustedAddr(); u != nil {
		out.Untrusted = u.String()
	}
	if p := b.PairingAddr(); p != nil {
		out.Pairing = p.String()
	}
	attached := func() {
		if h := b.Handshake(); h != nil {
			out.UDID, out.UUID = h.Device().UDID, h.UUID.String()
		}
		if o.asJSON {
			writeJSON(a.stdout, out)
			return
		}
		fmt.Fprintf(a.stdout, "backend: RSD %s for %s (Handshake UUID %s)\n", out.RSD, out.UDID, out.UUID)
		if out.Untrusted != "" {
			fmt.Fprintf(a.stdout, "backend: untrusted RSD %s\n", out.Untrusted)
		}
		if out.Pairing != "" {
			fmt.Fprintf(a.stdout, "backend: network pairing %s\n", out.Pairing)
		}
		if out.CDSSocket != "" {
			fmt.Fprintf(a.stdout, "backend: CoreDeviceService bridge at %s\n", out.CDSSocket)
		}
		if out.TSS != "" {
			fmt.Fprintf(a.stdout, "backend: DDI signing stand-in %s (iosmux mounter auto-mount --tss-url %s)\n", out.TSS, out.TSS)
		}
	}
	switch {
	case o.target.rsd.given():
		ap, err := netip.ParseAddrPort(o.target.rsd.addr())
		if err != nil {
			return usagef("--rsd %s: want an IP address and port (the device's address inside its tunnel): %v", o.target.rsd.addr(), err)
		}
		return followStatic(ctx, a, b, ap, attached)
	case fleet != nil:
		return followSimulated(ctx, a, b, fleet, attached)
	default:
		api := o.target.tunneld
		if api == "" {
			api = envOr(a.getenv, "IOSMUX_TUNNELD", rsdapi.DefaultPMD3Addr)
		}
		return followTunneld(ctx, a, b, api, o.target.tunnel, o.asJSON, attached)
	}
}

var kernelDial = (&net.Dialer{Timeout: 15 * time.Second}).DialContext

// followStatic attaches to a fixed RSD address (reached by OS routing),
// retrying until the device answers, and serves until ctx ends.
func followStatic(ctx context.Context, a *app, b *backend.Backend, ap netip.AddrPort, attached func()) error {
	link := backend.DeviceTunnel{RSD: ap, Dial: kernelDial}
	wait := retry.Backoff{Min: time.Second, Max: 8 * time.Second, Jitter: -1}
	for {
		err := b.Attach(ctx, link)
		if err == nil {
			attached()
			<-ctx.Done()
			return nil
		}
		a.log.Warn("backend: device not reachable yet", "rsd", ap.String(), "err", err)
		if retry.Sleep(ctx, wait.Next()) != nil {
			return nil
		}
	}
}

// followTunneld polls tunneld's GET / for udid and attaches whenever its
// tunnel appears or changes. Until the first attach it says what it waits
// for.
func followTunneld(ctx context.Context, a *app, b *backend.Backend, api, udid string, asJSON bool, attached func()) error {
	c := &rsdapi.Client{Addr: api}
	var cur netip.AddrPort
	w := a.wait(fmt.Sprintf("device %s's tunnel in tunneld at %s", udid, api), asJSON)
	defer w.Done()
	lastErr := ""
	for {
		ap, err := tunneldRSD(ctx, c, udid)
		switch {
		case err != nil:
			if err.Error() != lastErr {
				a.log.Warn("backend: tunneld", "api", api, "err", err)
				lastErr = err.Error()
			}
		case !ap.IsValid() && cur.IsValid():
			a.log.Info("backend: the device's tunnel is gone", "udid", udid)
			b.Detach()
			cur = netip.AddrPort{}
		case ap.IsValid() && ap != cur:
			lastErr = ""
			if err := b.Attach(ctx, backend.DeviceTunnel{RSD: ap, Dial: kernelDial}); err != nil {
				a.log.Warn("backend: attaching", "udid", udid, "rsd", ap.String(), "err", err)
			} else {
				cur = ap
				w.Done()
				attached()
			}
		}
		if retry.Sleep(ctx, 2*time.Second) != nil {
			return nil
		}
	}
}

// tunneldRSD returns udid's first tunnel in tunneld's listing (zero if
// none).
func tunneldRSD(ctx context.Context, c *rsdapi.Client, udid string) (netip.AddrPort, error) {
	l, err := c.Find(ctx, udid)
	if errors.Is(err, rsdapi.ErrNoTunnel) {
		return netip.AddrPort{}, nil
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	return l.RSD()
}

// startBackendSim starts --simulate's iPhone, with the DDI signing
// stand-in on loopback.
func startBackendSim(a *app, o backendOptions, sdir string) (*sim.Fleet, error) {
	prof, err := sim.ParseProfile(o.simProfile)
	if err != nil {
		return nil, usageErr(err)
	}
	dir := o.simState
	if dir == "" {
		dir = filepath.Join(sdir, "backend-sim")
	}
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: prof, StateDir: dir, TSSAddr: "127.0.0.1:0", Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("starting the simulated iPhone: %w", err)
	}
	return f, nil
}

// simMux is a client of the simulated fleet's usbmuxd.
func simMux(f *sim.Fleet) *usbmux.Client {
	return usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})
}

// followSimulated keeps a userspace CoreDeviceProxy tunnel to the
// simulated iPhone (rebuilt after reboots and replugs), attaching the
// backend to each tunnel.
func followSimulated(ctx context.Context, a *app, b *backend.Backend, f *sim.Fleet, attached func()) error {
	d := f.Devices()[0]
	mux := simMux(f)
	for {
		if err := d.WaitState(ctx, sim.StatePlugged); err != nil {
			return nil
		}
		tn, ns, err := simTunnel(ctx, a, mux, d.UDID())
		if err != nil {
			a.log.Warn("backend: tunnel to the simulated iPhone", "udid", d.UDID(), "err", err)
			if retry.Sleep(ctx, time.Second) != nil {
				return nil
			}
			continue
		}
		link := backend.DeviceTunnel{RSD: tn.RSD(), Dial: ns.DialContext, Done: tn.Done()}
		if err := b.Attach(ctx, link); err != nil {
			a.log.Warn("backend: attaching", "udid", d.UDID(), "err", err)
		} else {
			attached()
		}
		select {
		case <-ctx.Done():
			tn.Close()
			return nil
		case <-tn.Done():
			a.log.Info("backend: tunnel to the simulated iPhone ended; rebuilding it", "udid", d.UDID(), "err", tn.Err())
		}
		tn.Close()
	}
}

// simTunnel pairs with the simulated device over lockdown if needed and
// opens a CoreDeviceProxy tunnel ending in a userspace stack.
func simTunnel(ctx context.Context, a *app, mux *usbmux.Client, udid string) (*establish.Tunnel, *utun.Netstack, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := mux.ListDevices(ctx)
	if err != nil {
		return nil, nil, err
	}
	var dev usbmux.DeviceEntry
	for _, d := range list {
		if usbmux.SameUDID(d.UDID(), udid) {
			dev = d
		}
	}
	if dev.DeviceID == 0 {
		return nil, nil, errors.New("not on usbmuxd")
	}
	var ns *utun.Netstack
	tn, err := a.establish(ctx, discovery.UsbmuxSighting(dev), establish.Options{
		Usbmux: mux,
		Pair:   lockdown.PairOptions{HostName: "iosmux-backend"},
		NewTUN: func(p tunnel.Params) (tun.Device, error) {
			var err error
			ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
			return ns, err
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return tn, ns, nil
}
