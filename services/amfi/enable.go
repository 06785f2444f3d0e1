package amfi

import (
	"context"
	"errors"
	"fmt"

	"github.com/iosmux/iosmux/services/reach"
)

// Lockdown domain and key of the Developer Mode status.
const (
	StatusDomain = "com.apple.security.mac.amfi"
	StatusKey    = "DeveloperModeStatus"
)

// open connects a client to the amfi service of o.
func open(ctx context.Context, o reach.Opener) (*Client, error) {
	conn, err := o.Open(ctx, reach.AMFI)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// Run opens a connection, sends one action and closes it (one connection
// per action, as pmd3 and go-ios do).
func Run(ctx context.Context, o reach.Opener, a Action) error {
	c, err := open(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Do(ctx, a); err != nil {
		return fmt.Errorf("%s: %w", o.UDID(), err)
	}
	return nil
}

// Status reads the Developer Mode status from the lockdown value (pmd3's
// source; every iOS 16+ device has it) when o reads values, else from
// amfi's status action.
func Status(ctx context.Context, o reach.Opener) (bool, error) {
	if vr, ok := o.(reach.ValueReader); ok {
		v, err := vr.GetValue(ctx, StatusDomain, StatusKey)
		if err != nil {
			return false, fmt.Errorf("amfi: %s: reading %s: %w", o.UDID(), StatusKey, err)
		}
		on, ok := v.(bool)
		if !ok {
			return false, fmt.Errorf("amfi: %s: %s is %T, want a bool", o.UDID(), StatusKey, v)
		}
		return on, nil
	}
	c, err := open(ctx, o)
	if err != nil {
		return false, err
	}
	defer c.Close()
	return c.Status(ctx)
}

// Step is a stage of Enable, for progress reports.
type Step int

const (
	StepCheck  Step = iota // reading the status
	StepArm                // asking the device to turn it on
	StepReboot             // waiting for the device to reboot and come back
	StepAccept             // accepting the prompt after the reboot
	StepDone               // Developer Mode is on
)

func (s Step) String() string {
	return [...]string{"checking Developer Mode", "enabling Developer Mode", "waiting for the device to reboot",
		"accepting Developer Mode", "Developer Mode is on"}[s]
}

// EnableConfig configures Enable.
type EnableConfig struct {
	// AwaitReboot waits for the device to reboot and come back and returns
	// an opener for it. nil uses the opener's own (reach.Rebooter: usbmuxd
	// lockdown); through a tunnel the caller rebuilds the tunnel.
	AwaitReboot func(ctx context.Context) (reach.Opener, error)
	// Progress, if set, is told of each step.
	Progress func(Step)
}

// Enable turns Developer Mode on (services.md §4):
// read the status (ErrAlreadyOn if on), arm it, wait for the reboot,
// accept, and read the status again. When arming is refused because of a
// passcode it reveals the switch in Settings and returns an error that
// errors.Is ErrPasscodeSet. It returns the opener of the device's new
// boot.
func Enable(ctx context.Context, o reach.Opener, cfg EnableConfig) (reach.Opener, error) {
	step := func(s Step) {
		if cfg.Progress != nil {
			cfg.Progress(s)
		}
	}
	await := cfg.AwaitReboot
	if await == nil {
		rb, ok := o.(reach.Rebooter)
		if !ok {
			return nil, errors.New("amfi: enable: this connection cannot follow the device through its reboot; give EnableConfig.AwaitReboot")
		}
		await = rb.AwaitReboot
	}
	udid := o.UDID()
	step(StepCheck)
	on, err := Status(ctx, o)
	if err != nil {
		return nil, err
	}
	if on {
		return o, fmt.Errorf("%s: %w", udid, ErrAlreadyOn)
	}
	step(StepArm)
	if err := Run(ctx, o, ActionArm); err != nil {
		if errors.Is(err, ErrPasscodeSet) {
			if rerr := Run(ctx, o, ActionReveal); rerr == nil {
				return nil, fmt.Errorf("%w; remove the passcode and run this again, or turn Developer Mode on by hand: the switch is now shown in Settings → Privacy & Security → Developer Mode", err)
			}
			return nil, fmt.Errorf("%w; remove the passcode and run this again", err)
		}
		return nil, err
	}
	step(StepReboot)
	no, err := await(ctx)
	if err != nil {
		return nil, fmt.Errorf("amfi: %s: Developer Mode is armed, but the device did not come back from its reboot: %w", udid, err)
	}
	step(StepAccept)
	if err := Run(ctx, no, ActionAccept); err != nil {
		return no, err
	}
	on, err = Status(ctx, no)
	if err != nil {
		return no, err
	}
	if !on {
		return no, fmt.Errorf("amfi: %s: the device accepted, but still reports Developer Mode off", udid)
	}
	step(StepDone)
	return no, nil
}
