package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/utun"
	"github.com/spf13/cobra"
)

// tunnelTarget is how the commands of the developer disk image's services
// (apps launch, processes, debugserver, info display) reach a device: its
// trusted RSD inside a tunnel, given with --rsd or found in tunneld (--tunnel
// or --udid). When the tunnel ends in a userspace stack — tunneld's or
// start-tunnel's --userspace — every connection goes through go-ios's
// userspace proxy: found in tunneld's go-ios API, or given with
// --userspace-proxy.
type tunnelTarget struct {
	rsd      *rsdTarget
	udid     string
	proxy    string
	stateDir string
}

const tunnelTargetHelp = `The device is reached through a tunnel's RSD: --tunnel UDID (or --udid
UDID) looks the tunnel up in the running tunneld, --rsd HOST PORT names it
as start-tunnel prints it. A userspace tunnel (tunneld --userspace, whose
go-ios API is served, or start-tunnel --userspace) is reached through its
userspace proxy, found in tunneld's go-ios API or given with
--userspace-proxy. These services come with the developer disk image:
mount it first ('iosmux mounter auto-mount').`

func addTunnelTarget(a *app, cmd *cobra.Command) *tunnelTarget {
	t := &tunnelTarget{rsd: addRSDTarget(a, cmd)}
	addUDIDFlag(cmd, &t.udid, "the device's `UDID`: its tunnel is looked up in tunneld, as with --tunnel")
	cmd.Flags().StringVar(&t.proxy, "userspace-proxy", "", "go-ios's userspace proxy of a userspace tunnel, `HOST:PORT` (start-tunnel --userspace prints it; default: asked of tunneld's go-ios API)")
	addStateDirFlag(cmd, &t.stateDir)
	return t
}

func (t *tunnelTarget) check(cmd *cobra.Command) error {
	if err := t.rsd.check(cmd); err != nil {
		return err
	}
	if cmd.Flags().Changed("udid") && t.rsd.given(cmd) {
		return usagef("give --udid or --tunnel/--rsd, not both")
	}
	if t.proxy != "" {
		if _, _, err := net.SplitHostPort(t.proxy); err != nil {
			return usagef("--userspace-proxy %q: want HOST:PORT", t.proxy)
		}
	}
	return nil
}

// goiosAPI is where tunneld's go-ios API is asked about userspace tunnels:
// IOSMUX_TUNNELD_GOIOS, or tunneld's host at go-ios's default port.
func (t *tunnelTarget) goiosAPI(a *app) string {
	if v := a.getenv("IOSMUX_TUNNELD_GOIOS"); v != "" {
		return v
	}
	api := t.rsd.tunneld
	if api == "" {
		api = envOr(a.getenv, "IOSMUX_TUNNELD", rsdapi.DefaultPMD3Addr)
	}
	host, _, err := net.SplitHostPort(api)
	if err != nil {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(rsdapi.DefaultGoIOSPort))
}

// open reads the device's RSD Handshake and returns the opener of its
// services.
func (t *tunnelTarget) open(ctx context.Context, a *app, cmd *cobra.Command) (*reach.RSD, error) {
	viaTunneld := !t.rsd.rsd.given()
	if cmd.Flags().Changed("udid") {
		t.rsd.tunnel = t.udid
	}
	addr, err := t.rsd.resolve(ctx, a, cmd)
	if err != nil {
		return nil, err
	}
	ap, err := resolveRSDAddr(ctx, addr)
	if err != nil {
		return nil, err
	}
	var dial reach.DialFunc
	switch {
	case t.proxy != "":
		dial = utun.PreambleDialer(t.proxy)
	case viaTunneld && t.rsd.found != "":
		// tunneld's go-ios API says whether the tunnel is a userspace
		// one; a tunneld without that API serves kernel tunnels as far
		// as we can tell.
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		gt, err := (&rsdapi.GoIOSClient{Addr: t.goiosAPI(a)}).Tunnel(lctx, t.rsd.found)
		cancel()
		if err == nil && gt.Userspace && gt.UserspacePort != 0 {
			proxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(gt.UserspacePort))
			a.log.Debug("userspace tunnel: dialling through its proxy", "udid", t.rsd.found, "proxy", proxy)
			dial = utun.PreambleDialer(proxy)
		} else if err != nil {
			a.log.Debug("tunneld's go-ios API not asked", "err", err)
		}
	}
	dir, err := rsdStateDir(a, t.stateDir)
	if err != nil {
		return nil, err
	}
	host, err := rsd.LoadOrCreateHostUUID(dir)
	if err != nil {
		return nil, err
	}
	r, err := reach.NewRSD(ctx, dial, ap, reach.RSDConfig{HostUUID: host, Logger: a.log})
	if err != nil && dial == nil && viaTunneld {
		return nil, fmt.Errorf("%w (if tunneld runs with --userspace, serve its go-ios API too, '--api pmd3,goios', or give --userspace-proxy)", err)
	}
	return r, err
}

// resolveRSDAddr parses HOST:PORT, looking a name up.
func resolveRSDAddr(ctx context.Context, addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolving %s: %w", host, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", port, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}
