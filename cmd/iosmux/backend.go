package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

func init() {
	register(&command{name: "backend", summary: "serve an iPhone's RSD to CoreDeviceService (and other RSD clients) through iosmux's tunnel", run: runBackend})
}

const backendHelp = `
Plays the iPhone's side of RemoteXPC/RSD towards macOS CoreDeviceService
(point it at --listen instead of the device's tunnel RSD) and any other RSD
client, and delegates everything to the real device through its tunnel:
the Handshake is the device's (Properties, services), every service port
is a forwarder to the device. The device sees one RSD peer with this
host's stable UUID, whatever the number of clients.

Where the device is (one of):
  --rsd HOST:PORT   its trusted RSD inside a kernel tunnel (iosmux
                    start-tunnel, or tunnel-address/tunnel-port of tunneld)
  --udid UDID       follow the device's tunnel in tunneld's API (--tunneld;
                    kernel TUN mode), re-attaching when it is rebuilt
  --simulate        a built-in simulated iPhone behind a userspace tunnel

Clients can also pair with the backend (its own identity per device, kept
in --state-dir) and open tunnels through it: --untrusted serves an
untrusted RSD listing the tunnel service, --pairing serves network pairing
(RPPairing), --mdns advertises them (_remoted._tcp, _remotepairing._tcp)
on the named interfaces. Pairing requests are accepted without asking:
anyone who reaches those ports can reach the device.

--wire-log FILE records every HTTP/2 frame and XPC message of every
connection as JSON lines (rotated at --wire-log-size MiB).`

// backendOut is what the command prints once serving.
type backendOut struct {
	RSD       string `json:"rsd"`
	Untrusted string `json:"untrusted,omitempty"`
	Pairing   string `json:"pairing,omitempty"`
	UDID      string `json:"udid,omitempty"`
	UUID      string `json:"uuid,omitempty"`
	WireLog   string `json:"wireLog,omitempty"`
}

func runBackend(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "backend", "[flags] (--rsd HOST:PORT | --udid UDID | --simulate)", backendHelp)
	listen := fs.String("listen", "[::1]:0", "RSD address to serve (give this to CoreDeviceService)")
	rsdAddr := fs.String("rsd", "", "the device's trusted RSD inside its kernel tunnel, HOST:PORT")
	udid := fs.String("udid", "", "follow this device's tunnel in tunneld's API")
	tunneldAddr := fs.String("tunneld", "127.0.0.1:49151", "tunneld's pymobiledevice3 API, for --udid")
	simulate := fs.Bool("simulate", false, "serve a built-in simulated iPhone (userspace tunnel)")
	simProfile := fs.String("simulate-profile", sim.DefaultProfile, "iOS profile of the simulated iPhone: "+strings.Join(sim.Profiles, ", "))
	untrusted := fs.String("untrusted", "", "serve an untrusted RSD (pairing) here, e.g. [::]:58783")
	pairingAddr := fs.String("pairing", "", "serve network pairing (RPPairing) here, e.g. [::]:0")
	mdnsIfs := fs.String("mdns", "", "advertise the pairing surfaces on these interfaces (comma-separated)")
	stateDir := fs.String("state-dir", "", "directory of the host UUID and the backend's pairing identities (env IOSMUX_STATE_DIR)")
	wireLog := fs.String("wire-log", "", "record every frame and XPC message as JSON lines in this file")
	wireLogSize := fs.Int("wire-log-size", 64, "MiB at which the wire log rotates")
	wireLogKeep := fs.Int("wire-log-keep", backend.DefaultWireLogBackups, "rotated wire logs kept")
	asJSON := fs.Bool("json", false, "print the endpoints as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	modes := 0
	for _, on := range []bool{*rsdAddr != "", *udid != "", *simulate} {
		if on {
			modes++
		}
	}
	if fs.NArg() != 0 || modes != 1 || *wireLogSize <= 0 || *wireLogKeep <= 0 {
		fmt.Fprintln(a.stderr, "iosmux backend: give exactly one of --rsd, --udid, --simulate")
		fs.Usage()
		return errUsage
	}
	var ifs []string
	for _, s := range strings.Split(*mdnsIfs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ifs = append(ifs, s)
		}
	}
	if len(ifs) > 0 && *untrusted == "" && *pairingAddr == "" {
		*pairingAddr = "[::]:0"
	}
	sdir, err := rsdStateDir(a, *stateDir)
	if err != nil {
		return err
	}
	hostUUID, err := rsd.LoadOrCreateHostUUID(sdir)
	if err != nil {
		return err
	}
	cfg := backend.Config{Listen: *listen, Untrusted: *untrusted, Pairing: *pairingAddr, MDNS: ifs,
		StateDir: filepath.Join(sdir, "backend"), HostUUID: hostUUID, Logger: a.log}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return err
	}
	if *wireLog != "" {
		wl, err := backend.OpenWireLog(backend.WireLogConfig{Path: *wireLog, MaxSize: int64(*wireLogSize) << 20, Backups: *wireLogKeep})
		if err != nil {
			return err
		}
		defer wl.Close()
		cfg.WireLog = wl
	}
	for _, addr := range []string{*untrusted, *pairingAddr} {
		if addr != "" && !loopbackAddr(addr) {
			a.log.Warn("backend: pairing is served beyond loopback and accepts every client: anyone who reaches it can reach the device", "listen", addr)
		}
	}
	b, err := backend.New(cfg)
	if err != nil {
		return err
	}
	defer b.Close()

	out := backendOut{RSD: b.Addr().String(), WireLog: *wireLog}
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
		if *asJSON {
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
	}
	switch {
	case *rsdAddr != "":
		ap, err := netip.ParseAddrPort(*rsdAddr)
		if err != nil {
			return fmt.Errorf("--rsd %q: %w", *rsdAddr, err)
		}
		return followStatic(ctx, a, b, ap, attached)
	case *udid != "":
		return followTunneld(ctx, a, b, *tunneldAddr, *udid, attached)
	default:
		prof, err := sim.ParseProfile(*simProfile)
		if err != nil {
			return fmt.Errorf("--simulate-profile: %w", err)
		}
		return followSimulated(ctx, a, b, prof, filepath.Join(sdir, "backend-sim"), attached)
	}
}

func loopbackAddr(hostport string) bool {
	ap, err := netip.ParseAddrPort(hostport)
	return err == nil && ap.Addr().IsLoopback()
}

var kernelDial = (&net.Dialer{Timeout: 15 * time.Second}).DialContext

// followStatic attaches to a fixed RSD address (reached by OS routing),
// retrying until the device answers, and serves until ctx ends.
func followStatic(ctx context.Context, a *app, b *backend.Backend, ap netip.AddrPort, attached func()) error {
	link := backend.Link{RSD: ap, Dial: kernelDial}
	for attempt := 0; ; attempt++ {
		err := b.Attach(ctx, link)
		if err == nil {
			attached()
			<-ctx.Done()
			return nil
		}
		a.log.Warn("backend: device not reachable yet", "rsd", ap.String(), "err", err)
		if !sleepCtx(ctx, min(time.Second<<min(attempt, 3), 10*time.Second)) {
			return nil
		}
	}
}

// followTunneld polls tunneld's GET / for udid and attaches whenever its
// tunnel appears or changes.
func followTunneld(ctx context.Context, a *app, b *backend.Backend, api, udid string, attached func()) error {
	hc := &http.Client{Timeout: 5 * time.Second}
	var cur netip.AddrPort
	for {
		ap, err := tunneldRSD(ctx, hc, api, udid)
		switch {
		case err != nil:
			a.log.Warn("backend: tunneld", "api", api, "err", err)
		case !ap.IsValid() && cur.IsValid():
			a.log.Info("backend: the device's tunnel is gone", "udid", udid)
			b.Detach()
			cur = netip.AddrPort{}
		case ap.IsValid() && ap != cur:
			if err := b.Attach(ctx, backend.Link{RSD: ap, Dial: kernelDial}); err != nil {
				a.log.Warn("backend: attaching", "udid", udid, "rsd", ap.String(), "err", err)
			} else {
				cur = ap
				attached()
			}
		}
		if !sleepCtx(ctx, 2*time.Second) {
			return nil
		}
	}
}

// tunneldRSD returns udid's first tunnel in tunneld's listing (zero if
// none).
func tunneldRSD(ctx context.Context, hc *http.Client, api, udid string) (netip.AddrPort, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/", nil)
	if err != nil {
		return netip.AddrPort{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return netip.AddrPort{}, fmt.Errorf("GET /: %s", resp.Status)
	}
	var list map[string][]struct {
		Address string `json:"tunnel-address"`
		Port    uint16 `json:"tunnel-port"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return netip.AddrPort{}, fmt.Errorf("GET /: %w", err)
	}
	for id, entries := range list {
		if !usbmux.SameUDID(id, udid) || len(entries) == 0 {
			continue
		}
		addr, err := netip.ParseAddr(entries[0].Address)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("tunnel-address %q: %w", entries[0].Address, err)
		}
		return netip.AddrPortFrom(addr, entries[0].Port), nil
	}
	return netip.AddrPort{}, nil
}

// followSimulated runs one simulated iPhone and keeps a userspace
// CoreDeviceProxy tunnel to it (rebuilt after reboots and replugs),
// attaching the backend to each tunnel.
func followSimulated(ctx context.Context, a *app, b *backend.Backend, prof sim.Profile, dir string, attached func()) error {
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: prof, StateDir: dir, Logger: a.log})
	if err != nil {
		return fmt.Errorf("starting the simulated iPhone: %w", err)
	}
	defer f.Close()
	d := f.Devices()[0]
	mux := usbmux.NewClient(usbmux.Config{Addr: usbmux.Addr{Net: "unix", Path: f.UsbmuxSocket()}})
	for {
		if err := d.WaitState(ctx, sim.StatePlugged); err != nil {
			return nil
		}
		tn, ns, err := simTunnel(ctx, mux, d.UDID())
		if err != nil {
			a.log.Warn("backend: tunnel to the simulated iPhone", "udid", d.UDID(), "err", err)
			if !sleepCtx(ctx, time.Second) {
				return nil
			}
			continue
		}
		link := backend.Link{RSD: tn.RSD(), Dial: ns.DialContext, Done: tn.Done()}
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
func simTunnel(ctx context.Context, mux *usbmux.Client, udid string) (*tunnel.Tunnel, *utun.Netstack, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := mux.ListDevices(ctx)
	if err != nil {
		return nil, nil, err
	}
	var dev usbmux.Device
	for _, d := range list {
		if usbmux.SameUDID(d.UDID(), udid) {
			dev = d
		}
	}
	if dev.DeviceID == 0 {
		return nil, nil, errors.New("not on usbmuxd")
	}
	if _, err := mux.ReadPairRecord(ctx, dev.UDID()); err != nil {
		if _, err := lockdown.PairUsbmux(ctx, mux, dev, "iosmux-backend"); err != nil {
			return nil, nil, fmt.Errorf("lockdown pair: %w", err)
		}
	}
	var ns *utun.Netstack
	tn, err := tunnel.StartCoreDeviceProxy(ctx, mux, dev, tunnel.Options{NewTUN: func(p tunnel.Params) (tun.Device, error) {
		var err error
		ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
		return ns, err
	}})
	if err != nil {
		return nil, nil, err
	}
	return tn, ns, nil
}

// sleepCtx waits d or until ctx ends; false means ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
