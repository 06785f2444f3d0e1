package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"github.com/spf13/cobra"
	"golang.zx2c4.com/wireguard/tun"
)

const startTunnelHelp = `
Opens an IPv6 tunnel to the device and keeps it up until SIGINT or SIGTERM,
then tears it down (the TUN interface disappears). Once the tunnel is up it
prints what pymobiledevice3's start-tunnel prints, so scripts written for it
keep working; --script-mode prints only "<rsd-address> <rsd-port>".

Connections (-t/--connection, or --connection-type as pymobiledevice3 spells it):
  --connection usbmux   CoreDeviceProxy through usbmuxd (USB, or usbmuxd's
                        network devices); iOS 17.4 or later; needs only the
                        usual lockdown pairing, made first when missing
                        (tap Trust on the iPhone) unless --no-autopair.
                        The default.
  --connection usb      RemotePairing over the USB-NCM link: the untrusted
                        RSD found by mDNS (or given with --rsd HOST PORT)
  --connection wifi     RemotePairing over the network: _remotepairing._tcp
                        found by mDNS (or given with --remotepairing HOST PORT)
The RemotePairing connections need a pair record ('iosmux pair'). Their
transport is -p/--protocol tcp (TLS-PSK, every iOS) or quic (iOS 17.0-18.1).
HOST PORT may also be written HOST:PORT or [IPv6]:PORT. Without an address,
the device is looked for by mDNS for up to --timeout, saying so.

--userspace needs no root: the tunnel ends in a network stack inside this
process, and the RSD port is forwarded to a port on 127.0.0.1, which is what
is printed as the RSD address and port. Every other device port is reached
through one more 127.0.0.1 port, printed as the userspace proxy: go-ios's
userspace-tunnel protocol (a client sends the 16-byte IPv6 destination and
the port as 4 bytes little endian, then talks to that service), the same
port 'iosmux tunneld --userspace' lists as userspaceTunPort.`

type startTunnelOptions struct {
	udid, connection, protocol    string
	userspace, scriptMode, asJSON bool
	noAutopair                    bool
	muxAddr, recordsDir, stateDir string
	secrets                       string
	timeout                       time.Duration
	rsd, remotepairing            hostPortValue
}

func newStartTunnelCmd(a *app) *cobra.Command {
	var o startTunnelOptions
	cmd := &cobra.Command{
		Use:   "start-tunnel [--udid U] [-t usbmux|usb|wifi] [--rsd HOST PORT | --remotepairing HOST PORT] [-p tcp|quic]",
		Short: "open a tunnel to an iPhone (iOS 17+) and keep it up until interrupted",
		Long:  startTunnelHelp,
		Example: `  sudo iosmux start-tunnel --udid 00008110-001A2B3C4D5E6F70
  iosmux start-tunnel --userspace
  sudo iosmux start-tunnel -t usb --rsd fe80::1%enp0s20u1 58783
  sudo iosmux start-tunnel -t wifi -p quic --script-mode`,
		RunE: func(cmd *cobra.Command, args []string) error { return runStartTunnel(cmd.Context(), a, o) },
	}
	f := cmd.Flags()
	addUDIDFlag(cmd, &o.udid, "")
	enumFlag(cmd, &o.connection, "connection", "t", "", []string{"usbmux", "usb", "wifi"}, "how to reach the device (default usbmux; usb with --rsd, wifi with --remotepairing)")
	aliasFlag(cmd, "connection-type", "connection", false)
	enumFlag(cmd, &o.protocol, "protocol", "p", "tcp", []string{"tcp", "quic"}, "RemotePairing transport")
	f.Var(&o.rsd, "rsd", "the device's untrusted RSD (USB-NCM link, port 58783)")
	f.Var(&o.remotepairing, "remotepairing", "the device's network pairing port (_remotepairing._tcp)")
	f.BoolVar(&o.userspace, "userspace", false, "no TUN interface (no root): a network stack in this process, RSD forwarded to 127.0.0.1")
	f.BoolVar(&o.scriptMode, "script-mode", false, "print only '<rsd-address> <rsd-port>'")
	addJSONFlag(cmd, &o.asJSON, "the tunnel")
	addTimeoutFlag(cmd, &o.timeout, 30*time.Second, "to find the device and set the tunnel up (pairing a new device has its own "+pairTimeout.String()+")")
	addAutopairFlag(cmd, &o.noAutopair)
	f.StringVar(&o.secrets, "secrets", "", "write the QUIC TLS secrets (NSS key log) to this `FILE`, for Wireshark")
	addRecordsFlag(cmd, &o.recordsDir)
	addStateDirFlag(cmd, &o.stateDir)
	addUsbmuxFlag(cmd, &o.muxAddr)
	return cmd
}

func runStartTunnel(ctx context.Context, a *app, o startTunnelOptions) error {
	viaRSD, viaRP := o.rsd.given(), o.remotepairing.given()
	conn := o.connection
	switch {
	case conn == "" && viaRSD:
		conn = "usb"
	case conn == "" && viaRP:
		conn = "wifi"
	case conn == "":
		conn = "usbmux"
	}
	proto := establish.Protocol(o.protocol)
	switch {
	case viaRSD && viaRP:
		return usagef("give at most one of --rsd HOST PORT and --remotepairing HOST PORT")
	case viaRSD && conn != "usb":
		return usagef("--rsd is the USB-NCM link's RSD: it goes with --connection usb, not %s", conn)
	case viaRP && conn != "wifi":
		return usagef("--remotepairing is a network pairing port: it goes with --connection wifi, not %s", conn)
	case conn == "usbmux" && proto != establish.TCP:
		return usagef("--connection usbmux (CoreDeviceProxy) is always tcp; --protocol quic needs --connection usb or wifi")
	case o.scriptMode && o.asJSON:
		return usagef("give --script-mode or --json, not both")
	}

	opt := establish.Options{Protocol: proto, UDID: o.udid, Logger: a.log}
	var stack *utun.Netstack
	if o.userspace {
		opt.NewTUN = func(p tunnel.Params) (tun.Device, error) {
			ns, err := utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
			stack = ns
			return ns, err
		}
	}
	if o.secrets != "" {
		f, err := os.OpenFile(o.secrets, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("--secrets: %w", err)
		}
		defer f.Close()
		opt.KeyLog = f
	}
	if conn != "usbmux" {
		dir, err := pairRecordsDir(a, o.recordsDir)
		if err != nil {
			return err
		}
		opt.Records = pairingStore(a, dir)
		if opt.HostName, err = os.Hostname(); err != nil {
			return fmt.Errorf("host name: %w", err)
		}
		if conn == "usb" {
			sdir, err := rsdStateDir(a, o.stateDir)
			if err != nil {
				return err
			}
			if opt.HostUUID, err = loadHostUUID(a, sdir); err != nil {
				return err
			}
		}
	}

	tn, err := startTunnel(ctx, a, conn, opt, o)
	if err != nil {
		if !o.userspace && errors.Is(err, os.ErrPermission) {
			err = fmt.Errorf("%w (a TUN interface needs root or CAP_NET_ADMIN; or use --userspace)", err)
		}
		return err
	}
	defer tn.Close()
	return serveTunnel(ctx, a, tn, stack, o.userspace, o.scriptMode, o.asJSON, o.secrets)
}

// startTunnel finds the device over the chosen connection and establishes
// the tunnel (establish.Establish, as tunneld does) within --timeout; over
// usbmux a device that is not paired is paired first, on the pairing's own
// clock, unless --no-autopair, and --timeout starts again after it.
func startTunnel(ctx context.Context, a *app, conn string, opt establish.Options, o startTunnelOptions) (*establish.Tunnel, error) {
	sctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	switch conn {
	case "usbmux":
		mux, err := newUsbmuxClient(a, o.muxAddr)
		if err != nil {
			return nil, err
		}
		dev, err := a.findDevice(sctx, mux, o.udid)
		if err != nil {
			return nil, fmt.Errorf("usbmuxd: %w", err)
		}
		opt.Usbmux, opt.Pair = mux, autopairOptions(o.noAutopair, a.stderr)
		opt.PairTimeout, opt.Timeout = pairTimeout, o.timeout
		return a.establish(ctx, discovery.UsbmuxSighting(dev), opt)
	case "usb":
		found, err := sightings(sctx, a, &o.rsd, discovery.SourceNCM, o.asJSON || o.scriptMode)
		if err != nil {
			return nil, err
		}
		return tryEach(found, func(s discovery.Event) (*establish.Tunnel, error) { return a.establish(sctx, s, opt) })
	default:
		found, err := sightings(sctx, a, &o.remotepairing, discovery.SourceRemotePairing, o.asJSON || o.scriptMode)
		if err != nil {
			return nil, err
		}
		return tryEach(found, func(s discovery.Event) (*establish.Tunnel, error) { return a.establish(sctx, s, opt) })
	}
}

// serveTunnel prints the tunnel and waits for an interrupt (nil) or the
// tunnel's end (its error).
func serveTunnel(ctx context.Context, a *app, tn *establish.Tunnel, stack *utun.Netstack, userspace, scriptMode, asJSON bool, secrets string) error {

	shown := tunnelOutput{Identifier: tn.Identifier, Interface: tn.Interface, Protocol: string(tn.Protocol),
		Path: string(tn.Method), Address: tn.Params.ServerAddress.String(), Port: int(tn.Params.ServerRSDPort),
		DeviceAddress: tn.Params.ServerAddress.String(), DevicePort: int(tn.Params.ServerRSDPort),
		ClientAddress: tn.Params.ClientAddress.String(), MTU: tn.Params.MTU}
	if userspace {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("device %s: userspace RSD forwarder: %w", tn.Identifier, err)
		}
		fw := utun.NewForwarder(ln, tn.RSD(), stack.DialContext, a.log)
		defer fw.Close()
		ap := fw.Addr().(*net.TCPAddr).AddrPort()
		shown.Address, shown.Port = ap.Addr().String(), int(ap.Port())
		shown.Userspace = true
		pln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("device %s: userspace proxy: %w", tn.Identifier, err)
		}
		px := utun.NewPreambleForwarder(pln, stack.DialContext, a.log)
		defer px.Close()
		shown.ProxyPort = pln.Addr().(*net.TCPAddr).Port
	}
	if err := printTunnel(a, shown, scriptMode, asJSON, secrets); err != nil {
		return err
	}
	a.log.Info("tunnel created", "udid", tn.Identifier, "path", tn.Method, "interface", tn.Interface, "rsd", tn.RSD().String(), "userspace_proxy_port", shown.ProxyPort)

	select {
	case <-ctx.Done():
		tn.Close()
		a.log.Info("tunnel closed", "udid", tn.Identifier)
		return nil
	case <-tn.Done():
		a.log.Info("tunnel was closed", "udid", tn.Identifier, "err", tn.Err())
		return fmt.Errorf("device %s: tunnel ended: %w", tn.Identifier, tn.Err())
	}
}

// sightings returns the device sightings to try: the address given
// (a host name stands for each of its addresses), or what mDNS finds within
// the context (pmd3 tries discovery three times; here the monitor browses
// repeatedly until the first sighting or the timeout).
func sightings(ctx context.Context, a *app, given *hostPortValue, src discovery.Source, quiet bool) ([]discovery.Event, error) {
	if given.given() {
		addrs, err := given.resolve(ctx)
		if err != nil {
			return nil, err
		}
		found := make([]discovery.Event, len(addrs))
		for i, ap := range addrs {
			found[i] = discovery.Event{Kind: discovery.Attached, Source: src, Addr: ap}
		}
		return found, nil
	}
	var mon discovery.Monitor
	what := "USB-NCM (_remoted._tcp)"
	if src == discovery.SourceNCM {
		mon = &discovery.NCMMonitor{Logger: a.log}
	} else {
		mon = &discovery.BrowseMonitor{Service: discovery.NewWiFiMonitor().Service, Logger: a.log}
		what = "the network (_remotepairing._tcp)"
	}
	waitFor := "a device on " + what
	if dl, ok := ctx.Deadline(); ok {
		waitFor += fmt.Sprintf(" (up to %s; or give its address)", time.Until(dl).Round(time.Second))
	}
	w := a.wait(waitFor, quiet)
	found := discovery.First(ctx, mon, 500*time.Millisecond)
	w.Done()
	if len(found) == 0 {
		return nil, fmt.Errorf("no device found on %s: is it connected (and, over Wi-Fi, paired)? Or give its address with --rsd/--remotepairing", what)
	}
	return found, nil
}

// tryEach establishes through each sighting until one works; with several
// failures it reports them all.
func tryEach(found []discovery.Event, start func(discovery.Event) (*establish.Tunnel, error)) (*establish.Tunnel, error) {
	var errs []error
	for _, s := range found {
		tn, err := start(s)
		if err == nil {
			return tn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// tunnelOutput is what start-tunnel prints; Address and Port are what a
// client connects to (the forwarder in userspace mode).
type tunnelOutput struct {
	Identifier    string `json:"identifier"`
	Interface     string `json:"interface"`
	Protocol      string `json:"protocol"`
	Path          string `json:"path"`
	Address       string `json:"rsd_address"`
	Port          int    `json:"rsd_port"`
	DeviceAddress string `json:"tunnel_address"`
	DevicePort    int    `json:"tunnel_rsd_port"`
	ClientAddress string `json:"client_address"`
	MTU           int    `json:"mtu"`
	Userspace     bool   `json:"userspace"`
	// ProxyPort is the 127.0.0.1 port of go-ios's userspace proxy, which
	// reaches every device port (userspace mode only).
	ProxyPort int `json:"userspace_proxy_port,omitempty"`
}

// printTunnel writes pymobiledevice3's start-tunnel output (tunneld-api.md
// §1.6–1.7): one line in script mode; plain lines when stdout is not a
// terminal, where the protocol prints as Python 3.11+ formats its enum
// (TunnelProtocol.TCP); click's colours on a terminal, where it prints as
// tcp/quic.
func printTunnel(a *app, t tunnelOutput, scriptMode, asJSON bool, secrets string) error {
	w := a.stdout
	var err error
	switch {
	case asJSON:
		err = writeJSON(w, t)
	case scriptMode:
		_, err = fmt.Fprintf(w, "%s %d\n", t.Address, t.Port)
	case a.terminal(w) && a.getenv("NO_COLOR") == "":
		err = writeColored(w, t, secrets)
	default:
		err = writePlain(w, t, secrets)
	}
	if f, ok := w.(interface{ Sync() error }); ok {
		f.Sync()
	}
	return err
}

func writePlain(w io.Writer, t tunnelOutput, secrets string) error {
	var b strings.Builder
	if secrets != "" {
		fmt.Fprintf(&b, "Secrets: %s\n", secrets)
	}
	fmt.Fprintf(&b, "Identifier: %s\nInterface: %s\nProtocol: %s\nRSD Address: %s\nRSD Port: %d\n",
		t.Identifier, t.Interface, "TunnelProtocol."+strings.ToUpper(t.Protocol), t.Address, t.Port)
	fmt.Fprintf(&b, "Use the follow connection option:\n--rsd %s %d\n", t.Address, t.Port)
	if t.ProxyPort != 0 {
		fmt.Fprintf(&b, "Userspace proxy (go-ios protocol, every device port): 127.0.0.1:%d\n", t.ProxyPort)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// style is click.style(text, fg=color, bold=True): colour, bold, text,
// reset.
func style(text string, color int) string {
	return fmt.Sprintf("\x1b[%dm\x1b[1m%s\x1b[0m", color, text)
}

const (
	yellow  = 33
	magenta = 35
	cyan    = 36
	white   = 37
)

func writeColored(w io.Writer, t tunnelOutput, secrets string) error {
	var b strings.Builder
	line := func(label, value string) {
		b.WriteString(style(label, yellow) + style(value, white) + "\n")
	}
	if secrets != "" {
		b.WriteString(style("Secrets: ", magenta) + style(secrets, white) + "\n")
	}
	line("Identifier: ", t.Identifier)
	line("Interface: ", t.Interface)
	line("Protocol: ", t.Protocol)
	line("RSD Address: ", t.Address)
	line("RSD Port: ", strconv.Itoa(t.Port))
	b.WriteString(style("Use the follow connection option:\n", yellow) + style(fmt.Sprintf("--rsd %s %d", t.Address, t.Port), cyan) + "\n")
	if t.ProxyPort != 0 {
		line("Userspace proxy (go-ios protocol, every device port): ", fmt.Sprintf("127.0.0.1:%d", t.ProxyPort))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
