package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/sdnotify"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunneld"
	"github.com/iosmux/iosmux/utun"
	"github.com/spf13/cobra"
)

const tunneldHelp = `
A drop-in replacement for 'pymobiledevice3 remote tunneld': finds every
iPhone (usbmuxd, the USB-NCM link, Wi-Fi RemotePairing, Wi-Fi lockdown),
keeps exactly one tunnel per device, rebuilds it when the device comes
back, and serves pymobiledevice3's HTTP API on --host:--port, so that
'pymobiledevice3 … --tunnel UDID', 'ios … ' (go-ios) and appium find the
devices. Stops on SIGINT/SIGTERM or GET /shutdown, removing every TUN.

  --simulate N    attach N built-in simulated iPhones (no hardware needed);
                  their identities, keys and pairings persist in
                  --simulate-state, so a restart finds the same devices.
                  Only the simulated usbmuxd is watched, unless --usb,
                  --wifi or --mobdev2 are given explicitly. --simulate
                  alone means --simulate 1.
  --userspace     no TUN interfaces (no root needed): tunnels end in a
                  network stack inside this process, reachable through
                  go-ios's userspace proxy port listed by the go-ios API.
  --advertise backend
                  list, for every device, iosmux's backend (its RSD on
                  --backend-host, services at its forwarders; see 'iosmux
                  help backend') instead of the device's own tunnel RSD:
                  the one to give CoreDeviceService. The device then sees
                  one RSD peer with this host's stable UUID whatever the
                  number of clients. Default: device.
  --api LIST      also serve go-ios's agent API (goios, port 60105) and
                  appium's tunnel registry (appium, port 42314).

Once a tunnel is up it prints a command to try it, e.g.
'iosmux rsd-info --tunnel UDID', which asks this tunneld where the
device is, as 'pymobiledevice3 … --tunnel UDID' does.

Kernel TUNs need CAP_NET_ADMIN: root, as pymobiledevice3's tunneld, or
an unprivileged service given the capability (dist/iosmux-tunneld.service);
with --simulate and without it, --userspace is chosen for you. The APIs
listen on loopback only unless --host says otherwise (then anyone who can
reach the port can list and stop your tunnels: there is no
authentication); --host 0.0.0.0 is IPv4 only, as in pymobiledevice3, and
requests whose Host header is a name (host.docker.internal, mymac.local)
are refused unless the name is given with --allow-host.

-d runs tunneld in the background and returns once it serves (or says why
it could not): its pid and log files are tunneld-PORT.pid and .log in
$XDG_RUNTIME_DIR/iosmux (/run/iosmux for root). Under systemd
(Type=notify) tunneld reports READY=1 once it serves.

pymobiledevice3's switches: --usb/--no-usb, --wifi/--no-wifi,
--usbmux/--no-usbmux, --mobdev2/--no-mobdev2 (all on by default).

` + cdsBridgeHelp + `
With tunneld it needs --advertise backend: every device's backend is
offered to the dylib through one bridge.`

// boolSwitch is pymobiledevice3's --name/--no-name pair.
type boolSwitch struct {
	name    string
	on, off bool
}

func addSwitch(cmd *cobra.Command, name, help string) *boolSwitch {
	s := &boolSwitch{name: name}
	cmd.Flags().BoolVar(&s.on, name, true, help)
	cmd.Flags().BoolVar(&s.off, "no-"+name, false, "turn --"+name+" off")
	return s
}

func (s *boolSwitch) value() bool { return s.on && !s.off }

type tunneldOptions struct {
	host                             string
	port, goiosPort, appiumPort      int
	daemonize, userspace             bool
	protocol                         string
	usb, wifi, usbmuxOn, mobdev2     *boolSwitch
	muxAddr                          string
	simulate                         int
	simState, simControl, simProfile string
	simDeviceEnd                     string
	apis                             []string
	recordsDir, stateDir             string
	advertise, backendHost           string
	allowHosts, backendAllow         []string
	backendAdvertise                 string
	cds                              cdsOptions
}

func newTunneldCmd(a *app) *cobra.Command {
	var o tunneldOptions
	cmd := &cobra.Command{
		Use:   "tunneld",
		Short: "keep a tunnel to every iPhone and serve pymobiledevice3's tunneld API (drop-in for 'pymobiledevice3 remote tunneld')",
		Long:  tunneldHelp,
		Example: `  sudo iosmux tunneld
  sudo iosmux tunneld --api pmd3,goios,appium -d
  iosmux tunneld --simulate 2 --userspace
  sudo iosmux tunneld --advertise backend --backend-host ::1
  sudo iosmux tunneld --advertise backend --cds-bridge --cds-build $CDS_BUILD`,
		RunE: func(cmd *cobra.Command, args []string) error { return runTunneld(cmd.Context(), a, cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.host, "host", tunneld.DefaultHost, "address the APIs listen on")
	portFlag(cmd, &o.port, "port", rsdapi.DefaultPMD3Port, "pymobiledevice3 API port (0: any free port)")
	f.BoolVarP(&o.daemonize, "daemonize", "d", false, "run in the background, returning once it serves (pid and log files in $XDG_RUNTIME_DIR/iosmux or /run/iosmux)")
	f.StringArrayVar(&o.allowHosts, "allow-host", nil, "also accept requests whose Host header is this `NAME` (repeatable; e.g. host.docker.internal with --host 0.0.0.0)")
	enumFlag(cmd, &o.protocol, "protocol", "p", "tcp", []string{"tcp", "quic"}, "RemotePairing tunnel transport (CoreDeviceProxy is always tcp)")
	o.usb = addSwitch(cmd, "usb", "watch USB-NCM links (_remoted._tcp)")
	o.wifi = addSwitch(cmd, "wifi", "watch Wi-Fi RemotePairing (_remotepairing._tcp)")
	o.usbmuxOn = addSwitch(cmd, "usbmux", "watch usbmuxd (CoreDeviceProxy)")
	o.mobdev2 = addSwitch(cmd, "mobdev2", "watch Wi-Fi lockdown (_apple-mobdev2._tcp)")
	f.BoolVar(&o.userspace, "userspace", false, "tunnels in a userspace network stack instead of TUN interfaces (no root)")
	enumListFlag(cmd, &o.apis, "api", []string{tunneld.APIPMD3}, []string{tunneld.APIPMD3, tunneld.APIGoIOS, tunneld.APIAppium}, "APIs to serve, comma separated")
	portFlag(cmd, &o.goiosPort, "go-ios-port", rsdapi.DefaultGoIOSPort, "go-ios agent API port")
	portFlag(cmd, &o.appiumPort, "appium-port", rsdapi.DefaultAppiumPort, "appium tunnel registry port")
	enumFlag(cmd, &o.advertise, "advertise", "", "device", []string{"device", "backend"}, "what the APIs list as each tunnel's RSD")
	f.StringVar(&o.backendHost, "backend-host", "::1", "with --advertise backend: the address the backends listen on")
	f.StringArrayVar(&o.backendAllow, "backend-allow-client", nil, "with a --backend-host beyond loopback: serve only clients in this `PREFIX` (address or CIDR; repeatable; loopback is always served)")
	f.StringVar(&o.backendAdvertise, "backend-advertise-address", "", "with a wildcard --backend-host (:: or 0.0.0.0): the `ADDR` the APIs list (default: this host's first global address)")
	addSimulateFlags(cmd, &o.simulate, &o.simState, &o.simProfile, 0, 1000, "attach N built-in simulated iPhones (no hardware needed)")
	deviceEndFlag(cmd, &o.simDeviceEnd, "simulate-device-end")
	f.StringVar(&o.simControl, "simulate-control", "", "serve the simulated devices' fault control endpoint here (HOST:PORT or unix:/path; see 'iosmux help sim')")
	addRecordsFlag(cmd, &o.recordsDir)
	addStateDirFlag(cmd, &o.stateDir)
	addUsbmuxFlag(cmd, &o.muxAddr)
	addCDSFlags(cmd, &o.cds)
	return cmd
}

func runTunneld(ctx context.Context, a *app, cmd *cobra.Command, o *tunneldOptions) (err error) {
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	proto := establish.Protocol(o.protocol)
	apiList := o.apis
	if o.daemonize {
		return daemonizeTunneld(ctx, a, o.host, o.port)
	}
	// As the background copy of tunneld -d: hold the pid file, and tell
	// the waiting parent how the start went.
	child, err := startDaemonChild(a)
	if err != nil {
		return err
	}
	defer child.done()
	defer func() { child.fail(err) }()
	backendAllow, err := parsePrefixes("backend-allow-client", o.backendAllow)
	if err != nil {
		return err
	}
	backendAdvertise, err := parseAdvertise("backend-advertise-address", o.backendAdvertise)
	if err != nil {
		return err
	}
	bcfg, bridged, err := o.cds.config(cmd)
	if err != nil {
		return err
	}
	if bridged && o.advertise != "backend" {
		return usagef("--cds-bridge needs --advertise backend: the bridge answers for the backends")
	}
	userspace := o.userspace

	if kerr := utun.CheckKernel(); !userspace && kerr != nil {
		if o.simulate == 0 {
			// pymobiledevice3's wording; it then exits 0 (UNCONFIRMED), we
			// fail: nothing was started.
			fmt.Fprintln(a.stderr, `This command requires root privileges. Consider retrying with "sudo".`)
			return fmt.Errorf("%w (dist/iosmux-tunneld.service runs it as an unprivileged user with the capability); or use --userspace", kerr)
		}
		a.log.Warn("tunneld: no kernel TUN interfaces: using --userspace", "why", kerr)
		userspace = true
	}

	sdir, err := rsdStateDir(a, o.stateDir)
	if err != nil {
		return err
	}
	// Under sudo, what the daemon wrote in the user's state folder (the
	// simulator's state, the backends') goes back to the user.
	defer chownBack(a, sdir)
	// Port 0 on the command line lets the kernel choose (tunneld.Config
	// takes 0 as "the default port").
	anyPort := func(p int) int {
		if p == 0 {
			return -1
		}
		return p
	}
	cfg := tunneld.Config{
		Host: o.host, Port: anyPort(o.port), GoIOSPort: anyPort(o.goiosPort), AppiumPort: anyPort(o.appiumPort), APIs: apiList,
		USB: o.usb.value(), WiFi: o.wifi.value(), Mobdev2: o.mobdev2.value(),
		Protocol: proto, Userspace: userspace, Logger: a.log, Establish: a.establish,
		AllowedHosts: o.allowHosts,
	}
	if ip := net.ParseIP(o.host); ip == nil {
		cfg.AllowedHosts = append(cfg.AllowedHosts, o.host)
	}
	if cfg.HostUUID, err = loadHostUUID(a, sdir); err != nil {
		return err
	}

	if o.advertise == "backend" {
		warnExposed(a, "the backends (trusted RSD and every device service)", backendListen(o.backendHost),
			"can reach the device's services", "Use --backend-host ::1, or restrict clients with --backend-allow-client.")
		bs, err := newBackends(backend.Config{Listen: backendListen(o.backendHost), StateDir: filepath.Join(sdir, "backend"),
			HostUUID: cfg.HostUUID, Advertise: backendAdvertise, AllowClients: backendAllow, Logger: a.log}, a.log)
		if err != nil {
			return err
		}
		// Closed once Run has returned, every tunnel ended.
		defer bs.Close()
		if bridged {
			// A tunnel exists only after the pairing it was built on was
			// verified: no other pairing source (docs/xcode.md).
			bcfg.StateDir, bcfg.Logger = filepath.Join(sdir, "backend"), a.log
			if bs.bridge, err = backend.NewBridge(bcfg); err != nil {
				return err
			}
			defer bs.bridge.Close() // before the backends close
		}
		cfg.Advertise = bs.advertise
	}

	// The simulated usbmuxd's socket path is known before the fleet starts,
	// so the APIs are bound (a second tunneld refused on its busy port)
	// before anything else runs.
	muxAddr, recordsDir := o.muxAddr, o.recordsDir
	var simDir string
	var prof sim.Profile
	if o.simulate > 0 {
		if prof, err = sim.ParseProfile(o.simProfile); err != nil {
			return usageErr(err)
		}
		simDir = o.simState
		if simDir == "" {
			simDir = filepath.Join(sdir, "sim")
		}
		muxAddr = "UNIX:" + filepath.Join(simDir, "usbmuxd")
		// The real-network monitors only see real devices.
		cfg.USB = set("usb") && o.usb.value()
		cfg.WiFi = set("wifi") && o.wifi.value()
		cfg.Mobdev2 = set("mobdev2") && o.mobdev2.value()
		if recordsDir == "" {
			// Keep the simulated pairings out of the user's real folder.
			recordsDir = filepath.Join(simDir, "pair-records")
		}
	}
	rdir, err := pairRecordsDir(a, recordsDir)
	if err != nil {
		return err
	}
	cfg.Records = pairingStore(a, rdir)
	if o.usbmuxOn.value() {
		if cfg.Usbmux, err = newUsbmuxClient(a, muxAddr); err != nil {
			return err
		}
	}
	var d *tunneld.Daemon
	var hinted sync.Once
	cfg.OnTunnel = func(up bool, t rsdapi.Tunnel) {
		printTunnelEvent(a, up, t)
		if up && slices.Contains(apiList, tunneld.APIPMD3) {
			hinted.Do(func() { printTryHint(a, d, t) })
		}
	}
	cfg.OnReady = func() {
		child.ready(d.Addr(apiList[0]))
		if err := sdnotify.Notify(a.getenv("NOTIFY_SOCKET"), sdnotify.Ready); err != nil {
			a.log.Warn("tunneld: telling systemd it is ready", "err", err)
		}
	}

	d, err = tunneld.New(cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	for _, api := range apiList {
		warnExposed(a, "the tunnel APIs", d.Addr(api), "can list, create and stop tunnels", "Use --host 127.0.0.1 unless you mean it.")
	}

	var fleet *sim.Fleet
	if o.simulate > 0 {
		start := time.Now()
		fleet, err = sim.StartFleet(sim.FleetConfig{Count: o.simulate, Profile: prof, StateDir: simDir,
			SocketPath: strings.TrimPrefix(muxAddr, "UNIX:"), DeviceEnd: sim.DeviceEnd(o.simDeviceEnd), Logger: a.log})
		if err != nil {
			return fmt.Errorf("starting %d simulated iPhones: %w", o.simulate, err)
		}
		defer func() {
			if err := fleet.Close(); err != nil {
				a.log.Error("tunneld: stopping the simulated iPhones", "err", err)
			}
		}()
		if o.simControl != "" {
			c, err := fleet.ServeControl(o.simControl)
			if err != nil {
				return fmt.Errorf("--simulate-control: %w", err)
			}
			defer c.Close()
			fmt.Fprintf(a.stdout, "simulated devices' control: %s\n", c.Addr())
		}
		a.log.Info("tunneld: simulated iPhones up", "count", o.simulate, "profile", prof.Name, "state", simDir, "took", time.Since(start).Round(time.Millisecond))
	}
	printAPIs(a, d, apiList, fleet)
	return d.Run(ctx)
}

func printAPIs(a *app, d *tunneld.Daemon, apis []string, fleet *sim.Fleet) {
	if fleet != nil {
		fmt.Fprintf(a.stdout, "simulated iPhones: %d behind usbmuxd %s\n", len(fleet.Devices()), fleet.UsbmuxSocket())
	}
	names := map[string]string{
		tunneld.APIPMD3:   "pymobiledevice3 tunneld API",
		tunneld.APIGoIOS:  "go-ios agent API",
		tunneld.APIAppium: "appium tunnel registry",
	}
	for _, api := range apis {
		fmt.Fprintf(a.stdout, "%-28s http://%s/\n", names[api]+":", d.Addr(api))
	}
	if slices.Contains(apis, tunneld.APIPMD3) {
		fmt.Fprintf(a.stdout, "list the tunnels:            curl http://%s/\n", d.Addr(tunneld.APIPMD3))
	}
	fmt.Fprintln(a.stdout, "waiting for devices (Ctrl-C stops and removes every tunnel)...")
}

// printTryHint prints, once, a command to paste to see a device answer
// through this tunneld: what a newcomer wants right after 'make run'.
func printTryHint(a *app, d *tunneld.Daemon, t rsdapi.Tunnel) {
	cmd := a.argv0 + " rsd-info --tunnel " + t.UDID
	if api := d.Addr(tunneld.APIPMD3); api != rsdapi.DefaultPMD3Addr {
		cmd += " --tunneld " + api
	}
	fmt.Fprintf(a.stdout, "try it:      %s\n", cmd)
}

func printTunnelEvent(a *app, up bool, t rsdapi.Tunnel) {
	if !up {
		fmt.Fprintf(a.stdout, "tunnel down  %s  (%s)\n", t.UDID, t.Key)
		return
	}
	via := t.Interface
	if t.Userspace {
		via = fmt.Sprintf("userspace, go-ios proxy 127.0.0.1:%d", t.UserspacePort)
	}
	fmt.Fprintf(a.stdout, "tunnel up    %s  --rsd %s %d  (%s, %s)\n", t.UDID, t.ListedAddress(), t.RSDPort, via, t.Key)
}
