package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/utun"
	"github.com/spf13/cobra"
)

// Reaching a userspace tunnel, and the services that live only behind a
// tunnel's RSD (the developer disk image's CoreDevice services and
// debugproxy), for the commands on serviceTarget (devservice.go).

// tunnelOnlyHelp is added to the help of commands whose services have no
// lockdown name.
const tunnelOnlyHelp = `These services come with the developer disk image (mount it first:
'iosmux mounter auto-mount') and are reached only through a tunnel's RSD:
--udid UDID (or neither flag) finds the device's tunnel in tunneld, as
--tunnel does; --rsd HOST PORT names one as start-tunnel prints it;
--open-tunnel opens one through usbmuxd for this command. A userspace
tunnel's ports are reached through its go-ios userspace proxy: found in
tunneld's go-ios API, or given with --userspace-proxy.`

func addProxyFlag(cmd *cobra.Command, t *serviceTarget) {
	cmd.Flags().StringVar(&t.proxy, "userspace-proxy", "", "go-ios's userspace proxy of a userspace tunnel, `HOST:PORT` (start-tunnel --userspace prints it; default: asked of tunneld's go-ios API)")
}

func (t *serviceTarget) checkProxy() error {
	if t.proxy != "" {
		if _, _, err := net.SplitHostPort(t.proxy); err != nil {
			return usagef("--userspace-proxy %q: want HOST:PORT", t.proxy)
		}
		if t.openTunnel {
			return usagef("--open-tunnel opens its own tunnel: it does not go with --userspace-proxy")
		}
	}
	return nil
}

// tunnelRSD opens the device's RSD for a service that has no lockdown
// name: --rsd, --tunnel or --open-tunnel as given, and otherwise the
// tunnel tunneld holds for --udid (or its only one). Call close after.
func (t *serviceTarget) tunnelRSD(ctx context.Context, a *app, cmd *cobra.Command) (*reach.RSD, error) {
	if t.openTunnel {
		o, err := t.open(ctx, a, cmd)
		if err != nil {
			return nil, err
		}
		return o.(*reach.RSD), nil
	}
	if !t.viaRSD(cmd) {
		t.rsd.tunnel = t.udid
	}
	addr, err := t.rsd.resolve(ctx, a, cmd)
	if err != nil {
		if !t.viaRSD(cmd) {
			return nil, fmt.Errorf("%w; or open a tunnel for this command with --open-tunnel", err)
		}
		return nil, err
	}
	return t.openRSD(ctx, a, addr)
}

// dialer is how the RSD at ap and its services are dialled: through the
// userspace proxy given or found in tunneld's go-ios API, or (nil) the
// kernel's routing.
func (t *serviceTarget) dialer(ctx context.Context, a *app, ap netip.AddrPort) reach.DialFunc {
	if t.proxy != "" {
		return utun.PreambleDialer(t.proxy)
	}
	if t.rsd.rsd.given() || t.rsd.found == "" {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	gt, err := (&rsdapi.GoIOSClient{Addr: t.goiosAPI(a)}).Tunnel(lctx, t.rsd.found)
	switch {
	case errors.Is(err, rsdapi.ErrNoTunnel), err != nil:
		a.log.Debug("tunneld's go-ios API not asked", "err", err)
		return nil
	case !gt.Userspace || gt.UserspacePort == 0 || gt.Address != ap.Addr().String():
		// A kernel tunnel; or a userspace one tunneld lists at a loopback
		// address of its own, where the device's ports are relayed.
		return nil
	}
	proxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(gt.UserspacePort))
	a.log.Debug("userspace tunnel: dialling through its proxy", "udid", t.rsd.found, "proxy", proxy)
	return utun.PreambleDialer(proxy)
}

// goiosAPI is where tunneld's go-ios API is asked about userspace tunnels:
// IOSMUX_TUNNELD_GOIOS, or tunneld's host at go-ios's default port.
func (t *serviceTarget) goiosAPI(a *app) string {
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

// tunnelCmd completes c into a command on tunnel-only services: the device
// flags, --json (printing what), --timeout (0: no limit) and RunE, which
// opens the device's RSD and hands it to run; any tunnel opened for the
// command is closed after.
func tunnelCmd(a *app, c *cobra.Command, what string, timeout time.Duration,
	run func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, r *reach.RSD) error) *cobra.Command {
	o := &serviceOptions{}
	c.Long = strings.TrimSpace(c.Long+"\n\n"+tunnelOnlyHelp) + "\n"
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := o.target.check(cmd); err != nil {
			return err
		}
		ctx := cmd.Context()
		if o.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.timeout)
			defer cancel()
		}
		defer o.target.close()
		r, err := o.target.tunnelRSD(ctx, a, cmd)
		if err != nil {
			return err
		}
		return run(ctx, cmd, args, o, r)
	}
	o.target = addServiceTarget(a, c)
	addJSONFlag(c, &o.asJSON, what)
	help := "for the whole command"
	if timeout == 0 {
		help = "for the whole command (0: no limit)"
	}
	addTimeoutFlag(c, &o.timeout, timeout, help)
	return c
}
