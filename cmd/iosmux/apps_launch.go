package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/services/coredevice/appservice"
	"github.com/iosmux/iosmux/services/coredevice/openstdio"
	"github.com/spf13/cobra"
)

const appsLaunchHelp = `
Launches an installed app through CoreDevice's appservice and prints its pid.
Arguments after -- are passed to the app; --env adds to its environment.
--stopped creates the process suspended, for a debugger to attach to ('iosmux
debugserver --attach PID'). A running instance is ended first unless
--terminate-existing=false, which brings it back instead.

--console connects the app's standard input, output and error to this
terminal (through openstdiosocket) and streams them until the app ends or
you interrupt; the app keeps running after an interrupt.

` + tunnelOnlyHelp

type appsLaunchOptions struct {
	target    *serviceTarget
	env       []string
	stopped   bool
	console   bool
	terminate bool
	asJSON    bool
	timeout   time.Duration
}

func newAppsLaunchCmd(a *app) *cobra.Command {
	var o appsLaunchOptions
	cmd := &cobra.Command{
		Use:   "launch BUNDLEID [-- ARGS...]",
		Short: "launch an installed app (appservice), optionally with its console",
		Long:  appsLaunchHelp,
		Example: `  iosmux apps launch com.example.demo --tunnel 00008110-001A2B3C4D5E6F70
  iosmux apps launch com.example.demo --console -- -verbose
  iosmux apps launch com.example.demo --env DEBUG=1 --stopped --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("name the app's bundle identifier")
			}
			if n := cmd.ArgsLenAtDash(); n > 1 || n == -1 && len(args) > 1 {
				return usagef("one bundle identifier; arguments for the app go after --")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.target.check(cmd); err != nil {
				return err
			}
			if o.console && o.asJSON {
				return usagef("--console streams the app's output: it does not go with --json")
			}
			env := map[string]string{}
			for _, kv := range o.env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usagef("--env %q: want NAME=VALUE", kv)
				}
				env[k] = v
			}
			return runAppsLaunch(cmd.Context(), a, cmd, o, args[0], args[1:], env)
		},
	}
	o.target = addServiceTarget(a, cmd)
	f := cmd.Flags()
	f.StringArrayVar(&o.env, "env", nil, "set an environment variable of the app, `NAME=VALUE` (repeatable)")
	f.BoolVar(&o.stopped, "stopped", false, "start the process suspended, for a debugger")
	f.BoolVar(&o.console, "console", false, "stream the app's stdin/stdout/stderr to this terminal until it ends")
	f.BoolVar(&o.terminate, "terminate-existing", true, "end a running instance first")
	addJSONFlag(cmd, &o.asJSON, "the launched process")
	addTimeoutFlag(cmd, &o.timeout, 30*time.Second, "to reach the device and launch")
	return cmd
}

// launchOutput is what --json prints.
type launchOutput struct {
	UDID       string   `json:"udid"`
	BundleID   string   `json:"bundleIdentifier"`
	PID        int64    `json:"pid"`
	Executable string   `json:"executable"`
	PIDVersion uint64   `json:"processIdentifierVersion,omitempty"`
	AuditToken []uint64 `json:"auditToken,omitempty"`
	Stopped    bool     `json:"stopped"`
}

func runAppsLaunch(ctx context.Context, a *app, cmd *cobra.Command, o appsLaunchOptions, bundleID string, args []string, env map[string]string) error {
	sctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	defer o.target.close()
	r, err := o.target.tunnelRSD(sctx, a, cmd)
	if err != nil {
		return err
	}
	svc, err := appservice.Dial(r, nil)
	if err != nil {
		return err
	}
	defer svc.Close()
	opts := appservice.LaunchOptions{Arguments: args, Environment: env, StartStopped: o.stopped, TerminateExisting: o.terminate}
	var stdio *openstdio.Stdio
	if o.console {
		if stdio, err = openstdio.Open(sctx, r); err != nil {
			return err
		}
		defer stdio.Close()
		opts.Stdio = stdio.ID
	}
	p, err := svc.Launch(sctx, bundleID, opts)
	if errors.Is(err, coredevice.ErrNotInstalled) {
		return fmt.Errorf("%w (list what is installed with 'iosmux apps list')", err)
	}
	if err != nil {
		return err
	}
	if o.asJSON {
		return writeJSON(a.stdout, launchOutput{UDID: r.UDID(), BundleID: bundleID, PID: p.PID, Executable: p.Executable(),
			PIDVersion: p.PIDVersion, AuditToken: p.AuditToken, Stopped: o.stopped})
	}
	state := ""
	if o.stopped {
		state = " (stopped: attach with 'iosmux debugserver --attach " + fmt.Sprint(p.PID) + "')"
	}
	if stdio == nil {
		fmt.Fprintf(a.stdout, "%s: launched %s as pid %d%s\n", r.UDID(), bundleID, p.PID, state)
		return nil
	}
	// The console: the app's output on stdout, our notes on stderr.
	fmt.Fprintf(a.stderr, "%s: launched %s as pid %d%s; its console follows (interrupt to leave it running)\n", r.UDID(), bundleID, p.PID, state)
	return streamConsole(ctx, a, stdio)
}

// streamConsole copies the app's output to stdout and stdin to the app
// until the app ends (the device closes the socket) or ctx does.
func streamConsole(ctx context.Context, a *app, s *openstdio.Stdio) error {
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	go io.Copy(s, a.stdin) // ends with the socket
	_, err := io.Copy(a.stdout, s)
	if ctx.Err() != nil {
		return nil // interrupted: the app runs on
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("the app's console: %w", err)
	}
	return nil
}
