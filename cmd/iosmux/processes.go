package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/services/ostrace"
	"github.com/spf13/cobra"
)

const processesHelp = `
The device's processes.

` + serviceTargetHelp

func newProcessesCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "processes",
		Short:   "list the device's processes",
		Long:    processesHelp,
		Example: "  iosmux processes ps\n  iosmux processes ps --json",
		RunE:    groupRun,
	}
	cmd.AddCommand(newProcessesPSCmd(a))
	return cmd
}

func newProcessesPSCmd(a *app) *cobra.Command {
	var o struct {
		target  *serviceTarget
		asJSON  bool
		timeout time.Duration
	}
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "list the device's processes: pid and name",
		Long: `Lists the running processes by pid and name through os_trace_relay's PidList
(docs/protocols/ostrace.md), which needs no developer disk image.

` + serviceTargetHelp,
		Example: "  iosmux processes ps\n  iosmux processes ps --tunnel 00008110-001A2B3C4D5E6F70 --json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.target.check(cmd); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			dev, err := o.target.open(ctx, a, cmd)
			if err != nil {
				return err
			}
			ps, err := ostrace.ListProcesses(ctx, dev)
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, ps)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PID\tNAME")
			for _, p := range ps {
				fmt.Fprintf(tw, "%d\t%s\n", p.PID, p.Name)
			}
			return tw.Flush()
		},
	}
	o.target = addServiceTarget(a, cmd)
	addJSONFlag(cmd, &o.asJSON, "the processes")
	addTimeoutFlag(cmd, &o.timeout, 30*time.Second, "for the whole command")
	return cmd
}
