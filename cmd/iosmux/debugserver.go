package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/iosmux/iosmux/services/coredevice/appservice"
	"github.com/iosmux/iosmux/services/debugproxy"
	"github.com/iosmux/iosmux/services/instproxy"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/spf13/cobra"
)

const debugserverHelp = `
Exposes the device's debugserver (the debugproxy service of the developer
disk image) on a local port and prints the lldb commands to paste: every
connection lldb makes to the port opens a new connection to the device
through the tunnel, whatever kind it is (kernel, userspace, the backend).

--app BUNDLEID looks the app's installed path up, for lldb to match a local
build (--local PATH adds 'target create' for it). --launch starts that app
suspended (appservice, startStopped) and attaches to it; --attach PID|NAME
attaches to a running process. --lldb runs lldb itself, connected and
attached, when lldb is on PATH. Without --lldb it runs until interrupted.

The port listens on 127.0.0.1; --listen elsewhere exposes the device's
debugger to the network and is warned about.

` + tunnelOnlyHelp

type debugserverOptions struct {
	target  *serviceTarget
	app     string
	attach  string
	launch  bool
	lldb    bool
	local   string
	listen  string
	asJSON  bool
	timeout time.Duration
}

func newDebugserverCmd(a *app) *cobra.Command {
	var o debugserverOptions
	cmd := &cobra.Command{
		Use:   "debugserver",
		Short: "expose the device's debugserver to lldb on a local port and print the commands",
		Long:  debugserverHelp,
		Example: `  iosmux debugserver --tunnel 00008110-001A2B3C4D5E6F70
  iosmux debugserver --app com.example.demo --launch --lldb
  iosmux debugserver --attach 4321 --json
  iosmux debugserver --app com.example.demo --local build/Demo.app --attach Demo`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.target.check(cmd); err != nil {
				return err
			}
			switch {
			case o.launch && o.app == "":
				return usagef("--launch needs --app BUNDLEID")
			case o.launch && o.attach != "":
				return usagef("give --launch or --attach, not both")
			case o.lldb && !o.launch && o.attach == "":
				return usagef("--lldb needs a process to attach to: --attach PID|NAME, or --app BUNDLEID --launch")
			case o.lldb && o.asJSON:
				return usagef("--lldb runs lldb here: it does not go with --json")
			}
			return runDebugserver(cmd.Context(), a, cmd, o)
		},
	}
	o.target = addServiceTarget(a, cmd)
	f := cmd.Flags()
	f.StringVar(&o.app, "app", "", "the app's `BUNDLEID`: its installed path goes into the commands")
	f.StringVar(&o.attach, "attach", "", "attach to a running process, `PID|NAME`")
	f.BoolVar(&o.launch, "launch", false, "launch --app suspended and attach to it")
	f.BoolVar(&o.lldb, "lldb", false, "run lldb (from PATH) connected and attached, instead of printing the commands")
	f.StringVar(&o.local, "local", "", "the local build of the app, `PATH` to its .app, for lldb's target")
	f.StringVar(&o.listen, "listen", "127.0.0.1:0", "where the forwarder listens, `HOST:PORT`")
	addJSONFlag(cmd, &o.asJSON, "the port and the lldb commands")
	addTimeoutFlag(cmd, &o.timeout, 30*time.Second, "to reach the device and prepare the process")
	return cmd
}

// debugserverOutput is what --json prints.
type debugserverOutput struct {
	UDID       string   `json:"udid"`
	Listen     string   `json:"listen"`
	Connect    string   `json:"connect"`
	PID        int64    `json:"pid,omitempty"`
	DevicePath string   `json:"devicePath,omitempty"`
	Commands   []string `json:"lldbCommands"`
}

func runDebugserver(ctx context.Context, a *app, cmd *cobra.Command, o debugserverOptions) error {
	var lldbPath string
	if o.lldb {
		p, err := exec.LookPath("lldb")
		if err != nil {
			return errors.New("lldb is not on PATH: install it (Debian: apt install lldb) or leave out --lldb and paste the commands into your lldb")
		}
		lldbPath = p
	}
	sctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	defer o.target.close()
	r, err := o.target.tunnelRSD(sctx, a, cmd)
	if err != nil {
		return err
	}
	if _, err := r.Lookup(reach.DebugProxy); err != nil {
		return err // names the mount as the fix
	}
	var (
		pid        int64
		devicePath string
	)
	if o.app != "" || o.attach != "" {
		svc, err := appservice.Dial(r, nil)
		if err != nil {
			return err
		}
		defer svc.Close()
		if o.app != "" {
			if devicePath, err = installedPath(sctx, r, o.app); err != nil {
				return err
			}
		}
		switch {
		case o.launch:
			p, err := svc.Launch(sctx, o.app, appservice.LaunchOptions{StartStopped: true, TerminateExisting: true})
			if err != nil {
				return err
			}
			pid = p.PID
			a.log.Info("launched suspended", "udid", r.UDID(), "app", o.app, "pid", pid)
		case o.attach != "":
			if pid, err = resolvePID(sctx, svc, r.UDID(), o.attach); err != nil {
				return err
			}
		}
	}

	if host, _, err := net.SplitHostPort(o.listen); err == nil {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			a.log.Warn("THE DEVICE'S DEBUGGER IS EXPOSED BEYOND THIS MACHINE: anyone who reaches " + o.listen + " can debug processes on the device")
		}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("debugserver forwarder: %w", err)
	}
	fcfg := debugproxy.ForwarderConfig{Opener: r, Logger: a.log}
	if o.lldb {
		// lldb runs its -o commands synchronously, and its "process
		// connect" then waits for a stopped process: hand it one.
		fcfg.Prepare = debugproxy.Attach(pid)
	}
	fw := debugproxy.NewForwarder(ln, fcfg)
	defer fw.Close()
	addr := ln.Addr().String()
	connect := "connect://" + addr
	cmds := lldbCommands(o.local, devicePath, connect, pid, o.lldb)

	if o.lldb {
		args := []string{}
		for _, c := range cmds {
			args = append(args, "-o", c)
		}
		lc := exec.CommandContext(ctx, lldbPath, args...)
		lc.Stdin, lc.Stdout, lc.Stderr = a.stdin, a.stdout, a.stderr
		a.log.Info("running lldb", "udid", r.UDID(), "forwarder", addr, "pid", pid)
		if err := lc.Run(); err != nil && ctx.Err() == nil {
			if ferr := fw.Err(); ferr != nil {
				return fmt.Errorf("lldb: %w (the forwarder: %v)", err, ferr)
			}
			return fmt.Errorf("lldb: %w", err)
		}
		return nil
	}
	if o.asJSON {
		if err := writeJSON(a.stdout, debugserverOutput{UDID: r.UDID(), Listen: addr, Connect: connect, PID: pid, DevicePath: devicePath, Commands: cmds}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.stdout, "%s: the device's debugserver is at %s until you interrupt this. In lldb:\n\n", r.UDID(), addr)
		for _, c := range cmds {
			fmt.Fprintln(a.stdout, "  "+c)
		}
		if pid == 0 {
			fmt.Fprintf(a.stdout, "\nthen 'process attach --pid PID' ('%s processes ps' lists them), or 'process launch' with a target.\n", a.argv0)
		}
	}
	<-ctx.Done()
	return nil
}

// lldbCommands are the lines to paste (or to run with -o): the platform,
// the target and its path on the device when known, the connection, and
// the attach unless the forwarder attaches first.
func lldbCommands(local, devicePath, connect string, pid int64, attached bool) []string {
	cmds := []string{"platform select remote-ios"}
	if local != "" {
		cmds = append(cmds, "target create "+quoteLLDB(local))
		if devicePath != "" {
			cmds = append(cmds, fmt.Sprintf("script lldb.target.module[0].SetPlatformFileSpec(lldb.SBFileSpec('%s'))", strings.ReplaceAll(devicePath, "'", `\'`)))
		}
	}
	cmds = append(cmds, "process connect "+connect)
	if pid != 0 && !attached {
		cmds = append(cmds, fmt.Sprintf("process attach --pid %d", pid))
	}
	return cmds
}

// quoteLLDB quotes a path for lldb's command line when it needs it.
func quoteLLDB(s string) string {
	if !strings.ContainsAny(s, " \t\"'\\") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// installedPath is the app's bundle path on the device, from
// installation_proxy's Lookup (its Path), as pymobiledevice3 takes it.
func installedPath(ctx context.Context, o reach.Opener, bundleID string) (string, error) {
	c, err := instproxy.Open(ctx, o)
	if err != nil {
		return "", err
	}
	defer c.Close()
	res, err := c.Lookup(ctx, []string{bundleID}, instproxy.LookupOptions{})
	if err != nil {
		return "", err
	}
	app, ok := res[bundleID]
	if !ok || app.Path() == "" {
		return "", fmt.Errorf("device %s: %s is not installed (install it with 'iosmux apps install')", o.UDID(), bundleID)
	}
	return app.Path(), nil
}
