package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/services/coredevice/deviceinfo"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/spf13/cobra"
)

func newInfoDisplayCmd(a *app) *cobra.Command {
	return tunnelCmd(a, &cobra.Command{
		Use:   "display",
		Short: "print the device's displays (CoreDevice deviceinfo)",
		Long: `Prints the displays CoreDevice's deviceinfo service reports: id, name,
native size in pixels, and which is primary.`,
		Example: "  iosmux info display --tunnel 00008110-001A2B3C4D5E6F70\n  iosmux info display --json",
	}, "the displays", 20*time.Second, func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, r *reach.RSD) error {
		c, err := deviceinfo.Dial(r, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		ds, err := c.Displays(ctx)
		if err != nil {
			return err
		}
		if o.asJSON {
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
	})
}
