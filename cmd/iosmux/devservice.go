package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"github.com/spf13/cobra"
	"golang.zx2c4.com/wireguard/tun"
)

// serviceTarget is how a developer-service command (amfi, mounter) reaches
// its device: through an RSD (--rsd HOST PORT, or --tunnel UDID looked up
// in tunneld) or, without either, through usbmuxd and lockdown (--udid, or
// the only device attached) — the path go-ios and libimobiledevice take.
// Service code sees only a reach.Opener either way.
type serviceTarget struct {
	rsd        *rsdTarget
	udid       string
	muxAddr    string
	stateDir   string
	openTunnel bool
	proxy      string // --userspace-proxy (coredevice.go)

	tunnels []*establish.Tunnel // opened for this command, closed by close
}

const serviceTargetHelp = `The device is reached through usbmuxd and lockdown (--udid, or the only
device attached), or through a tunnel's RSD: --tunnel UDID (the tunnel the
running tunneld holds), --rsd HOST PORT (as start-tunnel prints it), or
--open-tunnel (a userspace CoreDeviceProxy tunnel through usbmuxd, opened
for this command; iOS 17.4 and later). A userspace tunnel of tunneld or
start-tunnel is reached through its go-ios userspace proxy: found in
tunneld's go-ios API, or given with --userspace-proxy.`

func addServiceTarget(a *app, cmd *cobra.Command) *serviceTarget {
	t := &serviceTarget{rsd: addRSDTarget(a, cmd)}
	addUDIDFlag(cmd, &t.udid, "the device's UDID, reached through usbmuxd (dashes and case ignored); without it and without --rsd/--tunnel: the only device attached, or a choice on a terminal")
	addUsbmuxFlag(cmd, &t.muxAddr)
	addStateDirFlag(cmd, &t.stateDir)
	cmd.Flags().BoolVar(&t.openTunnel, "open-tunnel", false, "reach the device's RSD through a userspace tunnel opened for this command (CoreDeviceProxy through usbmuxd, iOS 17.4+)")
	addProxyFlag(cmd, t)
	return t
}

// close ends the tunnels opened for the command.
func (t *serviceTarget) close() {
	for _, tn := range t.tunnels {
		tn.Close()
	}
}

// viaRSD reports whether the RSD path was chosen.
func (t *serviceTarget) viaRSD(cmd *cobra.Command) bool { return t.rsd.given(cmd) || t.openTunnel }

func (t *serviceTarget) check(cmd *cobra.Command) error {
	if err := t.rsd.check(cmd); err != nil {
		return err
	}
	if t.rsd.given(cmd) && cmd.Flags().Changed("udid") {
		return usagef("give --udid (through usbmuxd) or --rsd/--tunnel (through a tunnel), not both")
	}
	if t.rsd.given(cmd) && t.openTunnel {
		return usagef("--open-tunnel opens its own tunnel: give it without --rsd/--tunnel (--udid picks the device)")
	}
	return t.checkProxy()
}

// open returns the opener for the chosen path.
func (t *serviceTarget) open(ctx context.Context, a *app, cmd *cobra.Command) (reach.Opener, error) {
	if !t.rsd.given(cmd) {
		mux, err := newUsbmuxClient(a, t.muxAddr)
		if err != nil {
			return nil, err
		}
		d, err := a.findDevice(ctx, mux, t.udid)
		if err != nil {
			return nil, err
		}
		lo := &reach.Lockdown{Mux: mux, Device: d}
		if t.openTunnel {
			return t.tunnelTo(ctx, a, lo)
		}
		return lo, nil
	}
	addr, err := t.rsd.resolve(ctx, a, cmd)
	if err != nil {
		return nil, err
	}
	return t.openRSD(ctx, a, addr)
}

func (t *serviceTarget) openRSD(ctx context.Context, a *app, addr string) (*reach.RSD, error) {
	ap, err := resolveAddrPort(ctx, addr)
	if err != nil {
		return nil, err
	}
	return t.readRSD(ctx, a, t.dialer(ctx, a, ap), ap)
}

// readRSD reads the RSD at ap through dial (nil: plain TCP), presenting
// this host's stable RSD identity.
func (t *serviceTarget) readRSD(ctx context.Context, a *app, dial reach.DialFunc, ap netip.AddrPort) (*reach.RSD, error) {
	dir, err := rsdStateDir(a, t.stateDir)
	if err != nil {
		return nil, err
	}
	host, err := rsd.LoadOrCreateHostUUID(dir)
	if err != nil {
		return nil, err
	}
	return reach.NewRSD(ctx, dial, ap, reach.RSDConfig{HostUUID: host, Logger: a.log})
}

// tunnelTo opens a userspace CoreDeviceProxy tunnel to lo's device and
// reads its RSD through it.
func (t *serviceTarget) tunnelTo(ctx context.Context, a *app, lo *reach.Lockdown) (*reach.RSD, error) {
	var ns *utun.Netstack
	// lo paired already; the tunnel only checks that the record holds.
	tn, err := a.establish(ctx, discovery.UsbmuxSighting(lo.Device), establish.Options{Logger: a.log,
		Usbmux: lo.Mux, Pair: lockdown.PairOptions{NoAutopair: true},
		NewTUN: func(p tunnel.Params) (tun.Device, error) {
			var err error
			ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
			return ns, err
		}})
	if err != nil {
		return nil, err
	}
	t.tunnels = append(t.tunnels, tn)
	return t.readRSD(ctx, a, ns.DialContext, tn.RSD())
}

// awaitReboot follows the device through a reboot on the RSD path: tunneld
// rebuilds the tunnel, so wait until the listed RSD answers with another
// boot session. --rsd names one tunnel, which the reboot ends for good.
func (t *serviceTarget) awaitReboot(a *app, cmd *cobra.Command, before reach.Opener) func(context.Context) (reach.Opener, error) {
	if !t.viaRSD(cmd) {
		return nil // the usbmuxd opener follows it itself
	}
	old := ""
	if r, ok := before.(*reach.RSD); ok {
		old = r.Handshake().Device().BootSessionUUID
	}
	return func(ctx context.Context) (reach.Opener, error) {
		if t.openTunnel {
			mux, err := newUsbmuxClient(a, t.muxAddr)
			if err != nil {
				return nil, err
			}
			lo, err := reach.NewLockdown(ctx, mux, before.UDID())
			if err != nil {
				return nil, err
			}
			back, err := lo.AwaitReboot(ctx)
			if err != nil {
				return nil, err
			}
			return t.tunnelTo(ctx, a, back.(*reach.Lockdown))
		}
		if t.rsd.rsd.given() {
			return nil, fmt.Errorf("the reboot ended the tunnel --rsd names; start a new one and run 'iosmux amfi enable' again to accept")
		}
		for {
			if addr, err := t.rsd.resolve(ctx, a, cmd); err == nil {
				if o, err := t.openRSD(ctx, a, addr); err == nil && o.Handshake().Device().BootSessionUUID != old {
					return o, nil
				}
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for tunneld to list the rebooted device: %w", ctx.Err())
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// resolveAddrPort parses HOST:PORT, looking a name up.
func resolveAddrPort(ctx context.Context, addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ta, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ta) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolving %s: %w", host, err)
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ta[0].Unmap(), uint16(p)), nil
}

// serviceOptions are the flags every developer-service command has.
type serviceOptions struct {
	target  *serviceTarget
	asJSON  bool
	timeout time.Duration
}

// serviceCmd builds one developer-service subcommand: the device flags,
// extra's own, --json and --timeout; run gets the device's opener, any
// tunnel opened for it closed after.
func serviceCmd(a *app, use, short, long, example string, timeout time.Duration, extra func(*cobra.Command),
	run func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error) *cobra.Command {
	o := &serviceOptions{}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long + "\n\n" + serviceTargetHelp, Example: example,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.target.check(cmd); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			defer o.target.close()
			dev, err := o.target.open(ctx, a, cmd)
			if err != nil {
				return err
			}
			return run(ctx, cmd, o, dev)
		},
	}
	o.target = addServiceTarget(a, cmd)
	if extra != nil {
		extra(cmd)
	}
	addJSONFlag(cmd, &o.asJSON, "the result")
	addTimeoutFlag(cmd, &o.timeout, timeout, "for the whole command")
	return cmd
}
