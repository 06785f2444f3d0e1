package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/services/coredevice/appservice"
	"github.com/iosmux/iosmux/services/ostrace"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/spf13/cobra"
)

func newProcessesCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "processes",
		Short: "processes on a device: list, signal, kill, watch",
		Long: `Lists the device's processes (ps) and, through CoreDevice's appservice, sends
them signals and waits for them to end (kill, signal, watch). A process is
named by its pid or by its executable's name.`,
		Example: `  iosmux processes ps --tunnel 00008110-001A2B3C4D5E6F70
  iosmux processes kill Demo
  iosmux processes signal 4321 STOP
  iosmux processes watch 4321`,
		Args: noArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newProcessesPsCmd(a), newProcessesKillCmd(a), newProcessesSignalCmd(a), newProcessesWatchCmd(a))
	return cmd
}

// processJSON is one process as --json prints it.
type processJSON struct {
	PID        int64  `json:"pid"`
	Name       string `json:"name"`
	Executable string `json:"executable,omitempty"`
}

func newProcessesPsCmd(a *app) *cobra.Command {
	return serviceCmd(a, "ps", "list the device's processes: pid, name and, through a tunnel, executable",
		`Lists the running processes. Through a tunnel whose device has the developer
disk image mounted, CoreDevice's appservice gives each one's executable as
well; otherwise (and through usbmuxd) os_trace_relay's PidList gives pid and
name (docs/protocols/ostrace.md), which needs no developer disk image.`,
		"  iosmux processes ps\n  iosmux processes ps --tunnel 00008110-001A2B3C4D5E6F70 --json", 30*time.Second, nil,
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			ps, err := listProcesses(ctx, a, dev)
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, ps)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PID\tNAME\tEXECUTABLE")
			for _, p := range ps {
				fmt.Fprintf(w, "%d\t%s\t%s\n", p.PID, p.Name, p.Executable)
			}
			return w.Flush()
		})
}

// listProcesses asks appservice when dev is an RSD listing it (executables
// included), os_trace's PidList otherwise; by pid.
func listProcesses(ctx context.Context, a *app, dev reach.Opener) ([]processJSON, error) {
	if r, ok := dev.(*reach.RSD); ok {
		if _, err := r.Lookup(reach.AppService); err == nil {
			svc, err := appservice.Dial(r, nil)
			if err != nil {
				return nil, err
			}
			defer svc.Close()
			ps, err := svc.ListProcesses(ctx)
			if err != nil {
				return nil, err
			}
			sort.Slice(ps, func(i, j int) bool { return ps[i].PID < ps[j].PID })
			out := make([]processJSON, len(ps))
			for i, p := range ps {
				out[i] = processJSON{PID: p.PID, Name: p.Name(), Executable: p.Executable()}
			}
			return out, nil
		}
		a.log.Debug("no appservice (no developer disk image mounted): listing through os_trace_relay", "udid", r.UDID())
	}
	ps, err := ostrace.ListProcesses(ctx, dev)
	if err != nil {
		return nil, err
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].PID < ps[j].PID })
	out := make([]processJSON, len(ps))
	for i, p := range ps {
		out[i] = processJSON{PID: int64(p.PID), Name: p.Name}
	}
	return out, nil
}

// resolvePID reads PID|NAME: a number is a pid; a name must match the
// executable name of exactly one process.
func resolvePID(ctx context.Context, svc *appservice.Client, udid, which string) (int64, error) {
	if n, err := strconv.ParseInt(which, 10, 64); err == nil && n > 0 {
		return n, nil
	}
	ps, err := svc.ListProcesses(ctx)
	if err != nil {
		return 0, err
	}
	var found []appservice.Process
	for _, p := range ps {
		if p.Name() == which {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("device %s: no process named %q ('iosmux processes ps' lists them)", udid, which)
	case 1:
		return found[0].PID, nil
	}
	pids := make([]string, len(found))
	for i, p := range found {
		pids[i] = strconv.FormatInt(p.PID, 10)
	}
	return 0, fmt.Errorf("device %s: %d processes are named %q (pids %s): give the pid", udid, len(found), which, strings.Join(pids, ", "))
}

// withProcess opens the appservice and finds the process args[0] names.
func withProcess(ctx context.Context, r *reach.RSD, which string, f func(svc *appservice.Client, pid int64) error) error {
	svc, err := appservice.Dial(r, nil)
	if err != nil {
		return err
	}
	defer svc.Close()
	pid, err := resolvePID(ctx, svc, r.UDID(), which)
	if err != nil {
		return err
	}
	return f(svc, pid)
}

// signalOutput is what kill and signal print with --json.
type signalOutput struct {
	UDID       string    `json:"udid"`
	PID        int64     `json:"pid"`
	Executable string    `json:"executable,omitempty"`
	Signal     int64     `json:"signal"`
	SignalName string    `json:"signalName"`
	DeviceTime time.Time `json:"deviceTimestamp,omitzero"`
}

func sendSignal(ctx context.Context, a *app, o *serviceOptions, r *reach.RSD, which string, sig int64) error {
	return withProcess(ctx, r, which, func(svc *appservice.Client, pid int64) error {
		res, err := svc.Signal(ctx, pid, sig)
		if err != nil {
			return err
		}
		if o.asJSON {
			return writeJSON(a.stdout, signalOutput{UDID: r.UDID(), PID: pid, Executable: res.Process.Executable(), Signal: sig,
				SignalName: appservice.SignalName(sig), DeviceTime: res.DeviceTimestamp})
		}
		fmt.Fprintf(a.stdout, "%s: sent %s to pid %d\n", r.UDID(), appservice.SignalName(sig), pid)
		return nil
	})
}

func newProcessesKillCmd(a *app) *cobra.Command {
	return tunnelCmd(a, &cobra.Command{
		Use:     "kill PID|NAME",
		Short:   "end a process (SIGKILL)",
		Long:    "Ends the process with SIGKILL through appservice.",
		Example: "  iosmux processes kill 4321\n  iosmux processes kill Demo --tunnel 00008110-001A2B3C4D5E6F70",
		Args:    exactArgs(1, "a pid or process name"),
	}, "what was sent", 20*time.Second, func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, r *reach.RSD) error {
		return sendSignal(ctx, a, o, r, args[0], appservice.SIGKILL)
	})
}

func newProcessesSignalCmd(a *app) *cobra.Command {
	var sig int64
	return tunnelCmd(a, &cobra.Command{
		Use:   "signal PID|NAME SIGNAL",
		Short: "send a signal to a process (Darwin names or numbers: TERM, STOP, CONT, USR1, 15, …)",
		Long: `Sends a signal through appservice. SIGNAL is a name (TERM, SIGTERM, any case)
or a number from 1 to 31, in Darwin's numbering, which differs from Linux's
for STOP (17), CONT (19), USR1 (30), USR2 (31) and others.`,
		Example: "  iosmux processes signal 4321 TERM\n  iosmux processes signal Demo SIGSTOP\n  iosmux processes signal 4321 19 --json",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := exactArgs(2, "a pid or process name and a signal")(cmd, args); err != nil {
				return err
			}
			var err error
			if sig, err = appservice.ParseSignal(args[1]); err != nil {
				return usageErr(err)
			}
			return nil
		},
	}, "what was sent", 20*time.Second, func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, r *reach.RSD) error {
		return sendSignal(ctx, a, o, r, args[0], sig)
	})
}

// exitOutput is what watch prints with --json.
type exitOutput struct {
	UDID               string `json:"udid"`
	PID                int64  `json:"pid"`
	ExitCode           int64  `json:"exitCode"`
	WasCoreDumpCreated bool   `json:"wasCoreDumpCreated"`
}

func newProcessesWatchCmd(a *app) *cobra.Command {
	return tunnelCmd(a, &cobra.Command{
		Use:   "watch PID|NAME",
		Short: "wait for a process to end and print how it ended",
		Long: `Waits (monitorprocesstermination) until the process ends and prints its exit
code; a process that is not running is reported at once.`,
		Example: "  iosmux processes watch 4321\n  iosmux processes watch Demo --json --timeout 10m",
		Args:    exactArgs(1, "a pid or process name"),
	}, "how it ended", 0, func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, r *reach.RSD) error {
		return withProcess(ctx, r, args[0], func(svc *appservice.Client, pid int64) error {
			w := a.wait(fmt.Sprintf("pid %d on %s to end", pid, r.UDID()), o.asJSON)
			st, err := svc.WaitExit(ctx, pid)
			w.Done()
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, exitOutput{UDID: r.UDID(), PID: pid, ExitCode: st.ExitCode, WasCoreDumpCreated: st.WasCoreDumpCreated})
			}
			how := fmt.Sprintf("exit code %d", st.ExitCode)
			if st.ExitCode < 0 {
				how = "ended by " + appservice.SignalName(-st.ExitCode)
			}
			fmt.Fprintf(a.stdout, "%s: pid %d ended (%s)\n", r.UDID(), pid, how)
			return nil
		})
	})
}
