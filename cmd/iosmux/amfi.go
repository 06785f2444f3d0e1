package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iosmux/iosmux/services/amfi"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/spf13/cobra"
)

const amfiHelp = `
Developer Mode (the amfi service, docs/protocols/services.md §4): read it,
show its switch in Settings, or turn it on.

` + serviceTargetHelp

func newAMFICmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "amfi",
		Short:   "Developer Mode: status, reveal, enable",
		Long:    amfiHelp,
		Example: "  iosmux amfi status\n  iosmux amfi enable --udid 00008110-001A2B3C4D5E6F70\n  iosmux amfi status --tunnel 00008110-001A2B3C4D5E6F70 --json",
		RunE:    groupRun,
	}
	cmd.AddCommand(newAMFIStatusCmd(a), newAMFIRevealCmd(a), newAMFIEnableCmd(a))
	return cmd
}

func newAMFIStatusCmd(a *app) *cobra.Command {
	return serviceCmd(a, "status", "print whether Developer Mode is on",
		"Reads the Developer Mode status (lockdown's com.apple.security.mac.amfi DeveloperModeStatus).",
		"  iosmux amfi status\n  iosmux amfi status --tunnel 00008110-001A2B3C4D5E6F70 --json", 30*time.Second, nil,
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			on, err := amfi.Status(ctx, dev)
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "developerMode": on})
			}
			state := "off"
			if on {
				state = "on"
			}
			fmt.Fprintf(a.stdout, "%s: Developer Mode is %s\n", dev.UDID(), state)
			return nil
		})
}

func newAMFIRevealCmd(a *app) *cobra.Command {
	return serviceCmd(a, "reveal", "show the Developer Mode switch in Settings",
		"Makes the Developer Mode switch visible in Settings → Privacy & Security, so it can be\nturned on by hand (a device with a passcode refuses 'enable'). No reboot.",
		"  iosmux amfi reveal", 30*time.Second, nil,
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			if err := amfi.Run(ctx, dev, amfi.ActionReveal); err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "revealed": true})
			}
			fmt.Fprintf(a.stdout, "%s: the Developer Mode switch is shown in Settings → Privacy & Security\n", dev.UDID())
			return nil
		})
}

func newAMFIEnableCmd(a *app) *cobra.Command {
	return serviceCmd(a, "enable", "turn Developer Mode on (the device reboots once)",
		`Turns Developer Mode on: arms it, waits while the device reboots and comes back,
accepts the prompt it shows, and reads the status again. A device with a
passcode refuses: the switch is then revealed in Settings to turn on by hand.
Already on is not an error. Through --tunnel, tunneld rebuilds the tunnel
after the reboot and the command waits for it; --rsd cannot follow a reboot.`,
		"  iosmux amfi enable\n  iosmux amfi enable --tunnel 00008110-001A2B3C4D5E6F70", 3*time.Minute, nil,
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			bar := a.wait("Developer Mode", o.asJSON)
			defer bar.Done()
			cfg := amfi.EnableConfig{
				AwaitReboot: o.target.awaitReboot(a, cmd, dev),
				Progress: func(s amfi.Step) {
					bar.Describe(s.String())
					if !o.asJSON {
						a.log.Info("amfi: "+s.String(), "udid", dev.UDID())
					}
				},
			}
			_, err := amfi.Enable(ctx, dev, cfg)
			already := errors.Is(err, amfi.ErrAlreadyOn)
			if err != nil && !already {
				return err
			}
			bar.Done()
			if o.asJSON {
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "developerMode": true, "alreadyOn": already})
			}
			if already {
				fmt.Fprintf(a.stdout, "%s: Developer Mode was already on\n", dev.UDID())
			} else {
				fmt.Fprintf(a.stdout, "%s: Developer Mode is on\n", dev.UDID())
			}
			return nil
		})
}
