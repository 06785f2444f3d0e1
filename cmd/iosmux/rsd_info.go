package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
	"github.com/spf13/cobra"
)

const rsdInfoHelp = `
Connects to a RemoteServiceDiscovery port (RemoteXPC over h2c): --rsd HOST
PORT as start-tunnel prints it, or --tunnel UDID to ask the running tunneld
where the device's tunnel is (as pymobiledevice3's --tunnel does). It reads the
device's Handshake and prints its properties and service table, like
'pymobiledevice3 remote rsd-info'. --json prints the Handshake as pymobiledevice3
does (UUIDs as text, data as base64, 64-bit integers exact).

The host announces itself with a stable UUID kept in the state directory
(--state-dir, env IOSMUX_STATE_DIR, default ~/.local/state/iosmux).

--demo starts an RSD server on loopback serving the published example iPhone
(docs/protocols/rsd.md §5, with a fresh random device UUID) and queries it
with the same client over TCP.`

type rsdInfoOptions struct {
	target   *rsdTarget
	asJSON   bool
	demo     bool
	timeout  time.Duration
	stateDir string
}

func newRSDInfoCmd(a *app) *cobra.Command {
	var o rsdInfoOptions
	cmd := &cobra.Command{
		Use:   "rsd-info (--rsd HOST PORT | --tunnel UDID | --demo)",
		Short: "print a device's RSD Handshake: properties and services",
		Long:  rsdInfoHelp,
		Example: `  iosmux rsd-info --tunnel 00008110-001A2B3C4D5E6F70
  iosmux rsd-info --rsd fd7b:e5b:6f53::1 64337
  iosmux rsd-info --rsd [fd7b:e5b:6f53::1]:64337 --json
  iosmux rsd-info --demo`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.target.check(cmd); err != nil {
				return err
			}
			if o.target.given(cmd) == o.demo {
				return usagef("give one of --rsd HOST PORT, --tunnel UDID or --demo")
			}
			return runRSDInfo(cmd.Context(), a, cmd, o)
		},
	}
	o.target = addRSDTarget(a, cmd)
	f := cmd.Flags()
	f.BoolVar(&o.demo, "demo", false, "serve the published example device on loopback and query it")
	addJSONFlag(cmd, &o.asJSON, "the Handshake")
	addTimeoutFlag(cmd, &o.timeout, 10*time.Second, "to connect and read the Handshake")
	addStateDirFlag(cmd, &o.stateDir)
	return cmd
}

func runRSDInfo(ctx context.Context, a *app, cmd *cobra.Command, o rsdInfoOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	var hostID xpc.UUID
	var addr string
	if o.demo {
		stop, demoAddr, err := startDemoRSD(ctx, a)
		if err != nil {
			return err
		}
		defer stop()
		addr = demoAddr.String()
		hostID, err = xpc.NewRandomUUID(nil) // the demo leaves no state behind
		if err != nil {
			return err
		}
	} else {
		dir, err := rsdStateDir(a, o.stateDir)
		if err != nil {
			return err
		}
		if hostID, err = loadHostUUID(a, dir); err != nil {
			return err
		}
		if addr, err = o.target.resolve(ctx, a, cmd); err != nil {
			return err
		}
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("rsd %s: connect: %w", addr, err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: hostID, XPC: &xpc.Config{Name: "rsd " + addr, Logger: a.log}})
	if err != nil {
		return err
	}
	defer c.Close()
	if o.asJSON {
		return writeJSON(a.stdout, json.RawMessage(xpc.AppendJSON(nil, c.Handshake.Body(), xpc.JSONPlain)))
	}
	return printHandshake(a, c.Handshake)
}

// startDemoRSD serves the published example device (rsd.md §5) on a
// loopback port until stop is called.
func startDemoRSD(ctx context.Context, a *app) (stop func(), addr *net.TCPAddr, err error) {
	srv, err := rsd.NewServer(rsd.ServerConfig{
		Properties: rsd.ExampleProperties(),
		Services:   rsd.ExampleServices(),
		// The example is an iOS 17.0 device, which spoke version 3.
		MessagingProtocolVersion: 3,
		Logger:                   a.log,
	})
	if err != nil {
		return nil, nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("demo rsd server: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(sctx, ln); err != nil {
			a.log.Error("demo rsd server", "err", err)
		}
	}()
	a.log.Info("demo: serving the published example iPhone", "rsd", ln.Addr().String(), "device_uuid", srv.UUID())
	return func() { cancel(); <-done }, ln.Addr().(*net.TCPAddr), nil
}

func printHandshake(a *app, h *rsd.Handshake) error {
	d := h.Device()
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Device\t%s (%s %s, build %s)\n", d.ProductType, d.ProductName, d.OSVersion, d.BuildVersion)
	fmt.Fprintf(w, "UDID\t%s\n", d.UDID)
	if d.UniqueChipID != 0 {
		fmt.Fprintf(w, "ECID\t%d\n", d.UniqueChipID)
	}
	if d.HardwareModel != "" {
		fmt.Fprintf(w, "Hardware\t%s %s %s\n", d.HardwareModel, d.HardwarePlatform, d.CPUArchitecture)
	}
	fmt.Fprintf(w, "RSD UUID\t%s\n", h.UUID)
	fmt.Fprintf(w, "Protocol\tMessagingProtocolVersion %d\n", h.MessagingProtocolVersion)
	fmt.Fprintf(w, "Properties\t%d\n", h.Properties.Len())
	fmt.Fprintf(w, "\nServices (%d)\n", len(h.Services))
	fmt.Fprintf(w, "PORT\tREMOTEXPC\tNAME\tENTITLEMENT\n")
	for _, s := range h.Services {
		xpcMark := "no"
		if s.UsesRemoteXPC() {
			xpcMark = "yes"
		}
		if s.IsShim() {
			xpcMark = "shim"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", s.Port, xpcMark, s.Name, s.Entitlement)
	}
	for _, name := range h.Skipped {
		fmt.Fprintf(w, "-\t-\t%s\t(skipped: bad Port)\n", name)
	}
	return w.Flush()
}
