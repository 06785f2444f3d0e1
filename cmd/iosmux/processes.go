package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/services/ostrace"
	"github.com/iosmux/iosmux/services/reach"
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
	return serviceCmd(a, "ps", "list the device's processes: pid and name",
		`Lists the running processes by pid and name through os_trace_relay's PidList
(docs/protocols/ostrace.md), which needs no developer disk image.`,
		"  iosmux processes ps\n  iosmux processes ps --tunnel 00008110-001A2B3C4D5E6F70 --json", 30*time.Second, nil,
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error {
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
		})
}
