package main

import (
	"context"
	"time"

	"github.com/iosmux/iosmux/services/reach"
	"github.com/spf13/cobra"
)

// streamCmd builds a command that reaches its device within --timeout
// and then streams until interrupted (syslog, notify observe, crash
// watch): start gets the device and a context bounded by --timeout for
// setting up, and returns the stream, which runs with the command's
// context. An interruption is the stream's normal end; a tunnel
// --open-tunnel opened is closed after.
func streamCmd(a *app, use, short, long, example, what string, extra func(*cobra.Command),
	start func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) (stream func(ctx context.Context) error, err error)) *cobra.Command {
	o := &serviceOptions{}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long + "\n\n" + serviceTargetHelp, Example: example,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.target.check(cmd); err != nil {
				return err
			}
			defer o.target.close()
			octx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			dev, err := o.target.open(octx, a, cmd)
			var stream func(context.Context) error
			if err == nil {
				stream, err = start(octx, cmd, o, dev)
			}
			cancel()
			if err != nil {
				return err
			}
			err = stream(cmd.Context())
			if cmd.Context().Err() != nil {
				return nil // interrupted: the normal end
			}
			return err
		},
	}
	o.target = addServiceTarget(a, cmd)
	if extra != nil {
		extra(cmd)
	}
	addJSONFlag(cmd, &o.asJSON, what)
	addTimeoutFlag(cmd, &o.timeout, 30*time.Second, "to reach the device")
	return cmd
}
