package main

import (
	"context"
	"errors"
	"fmt"
	"net"
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
func notifyService(insecure bool) reach.Service {
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
	var o struct {
		target   *serviceTarget
		insecure bool
		asJSON   bool
		count    int
		timeout  time.Duration
	}
	cmd := &cobra.Command{
		Use:   "observe NAME...",
		Short: "print Darwin notifications as the device posts them",
		Long: "Observes each NAME and prints every later post of one of them, one per line\n" +
			"(a JSON object with --json), until interrupted or --count posts have arrived.\n\n" + serviceTargetHelp,
		Example: "  iosmux notify observe com.apple.springboard.lockstate\n  iosmux notify observe --count 1 --json com.apple.mobile.application_installed",
		Args:    rangeArgs(1, -1, "one NAME or more"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.target.check(cmd); err != nil {
				return err
			}
			defer o.target.close()
			octx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			dev, err := o.target.open(octx, a, cmd)
			var c *notify.Client
			if err == nil {
				var conn net.Conn
				if conn, err = dev.Open(octx, notifyService(o.insecure)); err == nil {
					c = notify.NewClient(conn)
					err = c.Observe(octx, args...)
					defer c.Close()
				}
			}
			cancel()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			for n := 0; o.count == 0 || n < o.count; n++ {
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
	o.target = addServiceTarget(a, cmd)
	cmd.Flags().BoolVar(&o.insecure, "insecure", false, insecureHelp)
	cmd.Flags().IntVar(&o.count, "count", 0, "stop after `N` notifications (0: run until interrupted)")
	addJSONFlag(cmd, &o.asJSON, "each notification (one object per line)")
	addTimeoutFlag(cmd, &o.timeout, 30*time.Second, "to reach the device")
	return cmd
}
