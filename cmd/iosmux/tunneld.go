package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/tunneld"
)

func init() {
	register(&command{name: "tunneld", summary: "keep a tunnel to every iPhone and serve pymobiledevice3's tunneld API (drop-in for 'pymobiledevice3 remote tunneld')", run: runTunneld})
}

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
                  --wifi or --mobdev2 are given explicitly.
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

Kernel TUNs need root, as pymobiledevice3's tunneld does; with --simulate
and without root, --userspace is chosen for you. The APIs listen on
loopback only unless --host says otherwise (then anyone who can reach
the port can list and stop your tunnels: there is no authentication).

pymobiledevice3's switches: --usb/--no-usb, --wifi/--no-wifi,
--usbmux/--no-usbmux, --mobdev2/--no-mobdev2 (all on by default).`

// boolSwitch is pymobiledevice3's --name/--no-name pair.
type boolSwitch struct {
	name string
	on   *bool
	off  *bool
}

func addSwitch(fs *flag.FlagSet, name, help string) *boolSwitch {
	return &boolSwitch{
		name: name,
		on:   fs.Bool(name, true, help),
		off:  fs.Bool("no-"+name, false, "turn --"+name+" off"),
	}
}

func (s *boolSwitch) value() bool { return *s.on && !*s.off }

func runTunneld(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "tunneld", "[flags]", tunneldHelp)
	host := fs.String("host", tunneld.DefaultHost, "address the APIs listen on")
	port := fs.Int("port", rsdapi.DefaultPMD3Port, "pymobiledevice3 API port")
	daemonize := fs.Bool("daemonize", false, "run in the background (pid and log files in the temporary folder)")
	fs.BoolVar(daemonize, "d", false, "short for --daemonize")
	protocol := fs.String("protocol", "tcp", "RemotePairing tunnel transport: tcp or quic (CoreDeviceProxy is always tcp)")
	fs.StringVar(protocol, "p", "tcp", "short for --protocol")
	usb := addSwitch(fs, "usb", "watch USB-NCM links (_remoted._tcp)")
	wifi := addSwitch(fs, "wifi", "watch Wi-Fi RemotePairing (_remotepairing._tcp)")
	usbmuxOn := addSwitch(fs, "usbmux", "watch usbmuxd (CoreDeviceProxy)")
	mobdev2 := addSwitch(fs, "mobdev2", "watch Wi-Fi lockdown (_apple-mobdev2._tcp)")
	muxAddr := fs.String("usbmux-address", "", usbmuxAddressHelp)
	simulate := fs.Int("simulate", 0, "attach N built-in simulated iPhones")
	simState := fs.String("simulate-state", "", "where simulated devices keep their state (default <state dir>/sim)")
	simControl := fs.String("simulate-control", "", "serve the simulated devices' fault control endpoint here (host:port or unix:/path; see 'iosmux help sim')")
	simProfile := fs.String("simulate-profile", sim.DefaultProfile, "iOS profile of the simulated devices: "+strings.Join(sim.Profiles, ", "))
	userspace := fs.Bool("userspace", false, "tunnels in a userspace network stack instead of TUN interfaces (no root)")
	apis := fs.String("api", tunneld.APIPMD3, "APIs to serve, comma separated: pmd3, goios, appium")
	goiosPort := fs.Int("go-ios-port", rsdapi.DefaultGoIOSPort, "go-ios agent API port")
	appiumPort := fs.Int("appium-port", rsdapi.DefaultAppiumPort, "appium tunnel registry port")
	recordsDir := addRecordsFlag(fs)
	stateDir := fs.String("state-dir", "", "directory holding the host's RSD UUID (env IOSMUX_STATE_DIR)")
	advertise := fs.String("advertise", "device", "what the APIs list as each tunnel's RSD: device or backend")
	backendHost := fs.String("backend-host", "::1", "with --advertise backend: the address the backends listen on")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	proto := tunnel.Protocol(strings.ToLower(*protocol))
	if fs.NArg() != 0 || *simulate < 0 || (proto != tunnel.TCP && proto != tunnel.QUIC) ||
		(*advertise != "device" && *advertise != "backend") {
		fs.Usage()
		return errUsage
	}
	apiList := strings.Split(*apis, ",")
	for i, s := range apiList {
		apiList[i] = strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains([]string{tunneld.APIPMD3, tunneld.APIGoIOS, tunneld.APIAppium}, apiList[i]) {
			fmt.Fprintf(a.stderr, "iosmux tunneld: --api: unknown API %q (want pmd3, goios, appium)\n", apiList[i])
			return errUsage
		}
	}
	if *daemonize {
		return daemonizeTunneld(a, *host, *port)
	}

	if !*userspace && os.Geteuid() != 0 {
		if *simulate == 0 {
			// pymobiledevice3's wording; it then exits 0 (UNCONFIRMED), we
			// fail: nothing was started.
			fmt.Fprintln(a.stderr, `This command requires root privileges. Consider retrying with "sudo".`)
			return errors.New("not root: kernel TUN interfaces need root (or use --userspace)")
		}
		a.log.Warn("tunneld: not root: using --userspace (kernel TUN interfaces need root)")
		*userspace = true
	}
	if ip := net.ParseIP(*host); ip == nil || !ip.IsLoopback() {
		a.log.Warn("tunneld: THE TUNNEL APIS ARE REACHABLE FROM THE NETWORK: anyone who reaches " + *host +
			" can list, create and stop tunnels (no authentication). Use --host 127.0.0.1 unless you mean it.")
		fmt.Fprintf(a.stderr, "\n  WARNING: listening on %s, not loopback. The APIs have no authentication.\n\n", *host)
	}

	sdir, err := rsdStateDir(a, *stateDir)
	if err != nil {
		return err
	}
	// Port 0 on the command line lets the kernel choose (tunneld.Config
	// takes 0 as "the default port").
	anyPort := func(p int) int {
		if p == 0 {
			return -1
		}
		return p
	}
	cfg := tunneld.Config{
		Host: *host, Port: anyPort(*port), GoIOSPort: anyPort(*goiosPort), AppiumPort: anyPort(*appiumPort), APIs: apiList,
		USB: usb.value(), WiFi: wifi.value(), Mobdev2: mobdev2.value(),
		Protocol: proto, Userspace: *userspace, Logger: a.log,
	}
	if ip := net.ParseIP(*host); ip == nil {
		cfg.AllowedHosts = []string{*host}
	}
	if cfg.HostUUID, err = rsd.LoadOrCreateHostUUID(sdir); err != nil {
		return err
	}

	if *advertise == "backend" {
		bs, err := newBackends(backend.Config{Listen: backendListen(*backendHost), StateDir: filepath.Join(sdir, "backend"),
			HostUUID: cfg.HostUUID, Logger: a.log}, a.log)
		if err != nil {
			return err
		}
		// Closed once Run has returned, every tunnel ended.
		defer bs.Close()
		cfg.Advertise = bs.advertise
	}

	var fleet *sim.Fleet
	if *simulate > 0 {
		prof, err := sim.ParseProfile(*simProfile)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		dir := *simState
		if dir == "" {
			dir = filepath.Join(sdir, "sim")
		}
		start := time.Now()
		fleet, err = sim.StartFleet(sim.FleetConfig{Count: *simulate, Profile: prof, StateDir: dir, Logger: a.log})
		if err != nil {
			return fmt.Errorf("starting %d simulated iPhones: %w", *simulate, err)
		}
		defer func() {
			if err := fleet.Close(); err != nil {
				a.log.Error("tunneld: stopping the simulated iPhones", "err", err)
			}
		}()
		if *simControl != "" {
			c, err := fleet.ServeControl(*simControl)
			if err != nil {
				return fmt.Errorf("--simulate-control: %w", err)
			}
			defer c.Close()
			fmt.Fprintf(a.stdout, "simulated devices' control: %s\n", c.Addr())
		}
		a.log.Info("tunneld: simulated iPhones up", "count", *simulate, "profile", prof.Name, "state", dir, "took", time.Since(start).Round(time.Millisecond))
		*muxAddr = "UNIX:" + fleet.UsbmuxSocket()
		// The real-network monitors only see real devices.
		cfg.USB = set["usb"] && usb.value()
		cfg.WiFi = set["wifi"] && wifi.value()
		cfg.Mobdev2 = set["mobdev2"] && mobdev2.value()
		if *recordsDir == "" {
			// Keep the simulated pairings out of the user's real folder.
			*recordsDir = filepath.Join(dir, "pair-records")
		}
	}
	rdir, err := pairRecordsDir(a, *recordsDir)
	if err != nil {
		return err
	}
	cfg.Records = pairingStore(a, rdir)
	if usbmuxOn.value() {
		if cfg.Usbmux, err = newUsbmuxClient(a, *muxAddr); err != nil {
			return err
		}
	}
	cfg.OnTunnel = func(up bool, t rsdapi.Tunnel) { printTunnelEvent(a, up, t) }

	d, err := tunneld.New(cfg)
	if err != nil {
		return err
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

func printTunnelEvent(a *app, up bool, t rsdapi.Tunnel) {
	if !up {
		fmt.Fprintf(a.stdout, "tunnel down  %s  (%s)\n", t.UDID, t.Key)
		return
	}
	via := t.Interface
	if t.Userspace {
		via = fmt.Sprintf("userspace, go-ios proxy 127.0.0.1:%d", t.UserspacePort)
	}
	fmt.Fprintf(a.stdout, "tunnel up    %s  --rsd %s %d  (%s, %s)\n", t.UDID, t.Address, t.RSDPort, via, t.Key)
}

// daemonizeTunneld starts this command again in a new session without
// -d/--daemonize, with its output in a log file, records its pid and
// returns (pymobiledevice3 forks; Go cannot, so it re-executes).
func daemonizeTunneld(a *app, host string, port int) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var args []string
	for _, s := range os.Args[1:] {
		switch s {
		case "-d", "--d", "-daemonize", "--daemonize", "-d=true", "--daemonize=true":
			continue
		}
		args = append(args, s)
	}
	tmp := os.TempDir()
	logPath := filepath.Join(tmp, "iosmux-tunneld.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting tunneld in the background: %w", err)
	}
	pidPath := filepath.Join(tmp, "iosmux-tunneld.pid")
	if err := os.WriteFile(pidPath, fmt.Appendf(nil, "%d\n", cmd.Process.Pid), 0o644); err != nil {
		a.log.Warn("tunneld: pid file", "err", err)
	}
	fmt.Fprintf(a.stdout, "starting Tunneld %s (pid %d, log %s, pid file %s)\n", net.JoinHostPort(host, fmt.Sprint(port)), cmd.Process.Pid, logPath, pidPath)
	return cmd.Process.Release()
}
