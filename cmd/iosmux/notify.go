package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iosmux/iosmux/services/notify"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/spf13/cobra"
)

const notifyHelp = `
Darwin notifications on the device through notification_proxy
(docs/protocols/notify.md): post one, or watch for names being posted (by
the device, an app, or another host).

` + serviceTargetHelp

func newNotifyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "notify",
		Short:   "post and observe Darwin notifications on the device",
		Long:    notifyHelp,
		Example: "  iosmux notify post com.apple.itunes-client.syncCancelRequest\n  iosmux notify observe com.apple.mobile.application_installed --json",
		RunE:    groupRun,
	}
	cmd.AddCommand(newNotifyPostCmd(a), newNotifyObserveCmd(a))
	return cmd
}

type notifyOptions struct {
	target   *serviceTarget
	insecure bool
	asJSON   bool
	timeout  time.Duration
}

func (o *notifyOptions) add(a *app, cmd *cobra.Command) {
	o.target = addServiceTarget(a, cmd)
	cmd.Flags().BoolVar(&o.insecure, "insecure", false, "use the insecure notification proxy (the one open before pairing)")
	addTimeoutFlag(cmd, &o.timeout, 30*time.Second, "to reach the device (and, for post, to post)")
}

// open reaches the device and opens the chosen notification proxy.
func (o *notifyOptions) open(ctx context.Context, a *app, cmd *cobra.Command) (*notify.Client, reach.Opener, error) {
	if err := o.target.check(cmd); err != nil {
		return nil, nil, err
	}
	dev, err := o.target.open(ctx, a, cmd)
	if err != nil {
		return nil, nil, err
	}
	svc := reach.NotificationProxy
	if o.insecure {
		svc = reach.InsecureNotificationProxy
	}
	conn, err := dev.Open(ctx, svc)
	if err != nil {
		return nil, nil, err
	}
	return notify.NewClient(conn), dev, nil
}

func newNotifyPostCmd(a *app) *cobra.Command {
	o := &notifyOptions{}
	cmd := &cobra.Command{
		Use:     "post NAME...",
		Short:   "post Darwin notifications on the device",
		Long:    "Posts each NAME on the device (notify_post). The device does not answer a post.\n\n" + serviceTargetHelp,
		Example: "  iosmux notify post com.apple.itunes-client.syncCancelRequest\n  iosmux notify post --udid 00008110-001A2B3C4D5E6F70 com.example.a com.example.b",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			c, dev, err := o.open(ctx, a, cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			for _, n := range args {
				if err := c.Post(ctx, n); err != nil {
					return fmt.Errorf("%s: %w", dev.UDID(), err)
				}
			}
			// Posts get no answer: Shutdown's ProxyDeath says they were
			// read before the connection closes.
			if err := c.Shutdown(ctx); err != nil {
				return fmt.Errorf("%s: %w", dev.UDID(), err)
			}
			if o.asJSON {
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "posted": args})
			}
			return nil
		},
	}
	o.add(a, cmd)
	addJSONFlag(cmd, &o.asJSON, "what was posted")
	return cmd
}

func newNotifyObserveCmd(a *app) *cobra.Command {
	o := &notifyOptions{}
	var count int
	cmd := &cobra.Command{
		Use:   "observe NAME...",
		Short: "print Darwin notifications as the device posts them",
		Long: "Observes each NAME and prints every later post of one of them, one per line\n" +
			"(a JSON object with --json), until interrupted or --count posts have arrived.\n\n" + serviceTargetHelp,
		Example: "  iosmux notify observe com.apple.springboard.lockstate\n  iosmux notify observe --count 1 --json com.apple.mobile.application_installed",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			octx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			c, dev, err := o.open(octx, a, cmd)
			if err == nil {
				err = c.Observe(octx, args...)
			}
			cancel()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			for n := 0; count == 0 || n < count; n++ {
				name, err := c.Next(ctx)
				if ctx.Err() != nil {
					return nil // interrupted
				}
				if errors.Is(err, notify.ErrProxyDeath) {
					return fmt.Errorf("%s: %w (did it reboot?)", dev.UDID(), err)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", dev.UDID(), err)
				}
				if o.asJSON {
					if err := jsonLine(a.stdout, map[string]any{"time": time.Now().Format(time.RFC3339Nano), "name": name}); err != nil {
						return err
					}
				} else {
					fmt.Fprintln(a.stdout, name)
				}
			}
			return nil
		},
	}
	o.add(a, cmd)
	cmd.Flags().IntVar(&count, "count", 0, "stop after `N` notifications (0: run until interrupted)")
	addJSONFlag(cmd, &o.asJSON, "each notification (one object per line)")
	return cmd
}
