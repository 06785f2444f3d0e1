package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/services/coredevice/deviceinfo"
	"github.com/spf13/cobra"
)

func newInfoDisplayCmd(a *app) *cobra.Command {
	var (
		target  *serviceTarget
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "display",
		Short: "print the device's displays (CoreDevice deviceinfo)",
		Long: `Prints the displays CoreDevice's deviceinfo service reports: id, name,
native size in pixels, and which is primary.

` + tunnelOnlyHelp,
		Example: "  iosmux info display --tunnel 00008110-001A2B3C4D5E6F70\n  iosmux info display --json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := target.check(cmd); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			defer target.close()
			r, err := target.tunnelRSD(ctx, a, cmd)
			if err != nil {
				return err
			}
			c, err := deviceinfo.Dial(r, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ds, err := c.Displays(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				if ds == nil {
					ds = []deviceinfo.Display{}
				}
				return writeJSON(a.stdout, ds)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tSIZE\tPRIMARY")
			for _, d := range ds {
				fmt.Fprintf(w, "%d\t%s\t%gx%g\t%v\n", d.ID, d.Name, d.Width, d.Height, d.Primary)
			}
			return w.Flush()
		},
	}
	target = addServiceTarget(a, cmd)
	addJSONFlag(cmd, &asJSON, "the displays")
	addTimeoutFlag(cmd, &timeout, 20*time.Second, "to reach the device and get an answer")
	return cmd
}
