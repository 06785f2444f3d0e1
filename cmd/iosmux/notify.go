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

// notifyService is the proxy --insecure chooses.
func notifyService(insecure bool) reach.Names {
	if insecure {
		return reach.InsecureNotificationProxy
	}
	return reach.NotificationProxy
}

const insecureHelp = "use the insecure notification proxy (the one open before pairing)"

func newNotifyPostCmd(a *app) *cobra.Command {
	var insecure bool
	cmd := serviceCmd(a, "post NAME...", "post Darwin notifications on the device",
		"Posts each NAME on the device (notify_post). The device does not answer a post.",
		"  iosmux notify post com.apple.itunes-client.syncCancelRequest\n  iosmux notify post --udid 00008110-001A2B3C4D5E6F70 com.example.a com.example.b",
		30*time.Second, func(cmd *cobra.Command) { cmd.Flags().BoolVar(&insecure, "insecure", false, insecureHelp) },
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			conn, err := dev.Open(ctx, notifyService(insecure))
			if err != nil {
				return err
			}
			c := notify.NewClient(conn)
			defer c.Close()
			names := cmd.Flags().Args()
			for _, n := range names {
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
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "posted": names})
			}
			return nil
		})
	cmd.Args = rangeArgs(1, -1, "one NAME or more")
	return cmd
}

func newNotifyObserveCmd(a *app) *cobra.Command {
	var insecure bool
	var count int
	cmd := streamCmd(a, "observe NAME...", "print Darwin notifications as the device posts them",
		"Observes each NAME and prints every later post of one of them, one per line\n"+
			"(a JSON object with --json), until interrupted or --count posts have arrived.",
		"  iosmux notify observe com.apple.springboard.lockstate\n  iosmux notify observe --count 1 --json com.apple.mobile.application_installed",
		"each notification (one object per line)",
		func(cmd *cobra.Command) {
			cmd.Flags().BoolVar(&insecure, "insecure", false, insecureHelp)
			cmd.Flags().IntVar(&count, "count", 0, "stop after `N` notifications (0: run until interrupted)")
		},
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) (func(context.Context) error, error) {
			conn, err := dev.Open(ctx, notifyService(insecure))
			if err != nil {
				return nil, err
			}
			c := notify.NewClient(conn)
			if err := c.Observe(ctx, cmd.Flags().Args()...); err != nil {
				c.Close()
				return nil, err
			}
			return func(ctx context.Context) error {
				defer c.Close()
				for n := 0; count == 0 || n < count; n++ {
					name, err := c.Next(ctx)
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
			}, nil
		})
	cmd.Args = rangeArgs(1, -1, "one NAME or more")
	return cmd
}
