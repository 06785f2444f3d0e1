package reach

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

// ValueReader reads lockdown values (GetValue): over RSD through the
// remote lockdown shim (no session; pmd3 reads DeveloperModeStatus this
// way), through usbmuxd in a lockdown session. Both openers implement it.
type ValueReader interface {
	// GetValue reads one value; an empty key reads the whole domain.
	GetValue(ctx context.Context, domain, key string) (any, error)
}

var (
	_ ValueReader = (*RSD)(nil)
	_ ValueReader = (*Lockdown)(nil)
)

// GetValue asks the trusted remote lockdown service.
func (r *RSD) GetValue(ctx context.Context, domain, key string) (any, error) {
	nc, err := r.Open(ctx, LockdownTrusted)
	if err != nil {
		return nil, err
	}
	c := lockdown.NewClient(nc, lockdown.ClientConfig{Label: r.cfg.Label})
	defer c.Close()
	v, err := c.GetValue(ctx, domain, key)
	if err != nil {
		return nil, fmt.Errorf("reach: %s: %w", r.UDID(), err)
	}
	return v, nil
}

// GetValue opens a lockdown session (TLS, the pair record usbmuxd holds)
// and reads the value.
func (l *Lockdown) GetValue(ctx context.Context, domain, key string) (any, error) {
	rec, err := lockdown.ReadPairRecord(ctx, l.Mux, l.UDID())
	if err != nil {
		return nil, fmt.Errorf("reach: %s: read pair record: %w", l.UDID(), err)
	}
	c, err := lockdown.DialUsbmux(ctx, l.Mux, l.Device.DeviceID, lockdown.ClientConfig{Label: l.Label, Timeout: l.Timeout})
	if err != nil {
		return nil, fmt.Errorf("reach: %s: %w", l.UDID(), err)
	}
	defer c.Close()
	if _, err := c.StartSession(ctx, rec); err != nil {
		return nil, fmt.Errorf("reach: %s: %w", l.UDID(), err)
	}
	v, err := c.GetValue(ctx, domain, key)
	if err != nil {
		return nil, fmt.Errorf("reach: %s: %w", l.UDID(), err)
	}
	return v, nil
}

// Rebooter waits out a reboot the device was told to make (amfi's arm):
// the device leaves, comes back, and AwaitReboot returns an opener for
// the new boot. Implemented by *Lockdown; a tunnel's RSD ends with the
// reboot, so whoever built the tunnel builds the next one.
type Rebooter interface {
	AwaitReboot(ctx context.Context) (Opener, error)
}

var _ Rebooter = (*Lockdown)(nil)

// AwaitReboot watches usbmuxd until the device has detached and attached
// again (usbmuxd gives it a new DeviceID on every attach), then until its
// lockdownd answers. ctx bounds the wait.
func (l *Lockdown) AwaitReboot(ctx context.Context) (Opener, error) {
	ln, err := l.Mux.Listen(ctx)
	if err != nil {
		return nil, fmt.Errorf("reach: %s: waiting for the reboot: %w", l.UDID(), err)
	}
	defer ln.Close()
	gone := false
	var back usbmux.DeviceEntry
	for back.DeviceID == 0 {
		ev, err := ln.Next(ctx)
		if err != nil {
			return nil, fmt.Errorf("reach: %s: waiting for the device to come back after its reboot: %w", l.UDID(), err)
		}
		switch ev.Kind {
		case usbmux.Detached:
			if ev.DeviceID == l.Device.DeviceID {
				gone = true
			}
		case usbmux.Attached:
			if !usbmux.SameUDID(ev.Device.UDID(), l.UDID()) {
				continue
			}
			// Listen first re-announces what is attached: the old id
			// means it has not left yet.
			if ev.Device.DeviceID != l.Device.DeviceID || gone {
				back = ev.Device
			}
		}
	}
	nl := &Lockdown{Mux: l.Mux, Device: back, Label: l.Label, Timeout: l.Timeout}
	for {
		_, err := nl.GetValue(ctx, "", "UniqueDeviceID")
		if err == nil {
			return nl, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reach: %s: lockdownd after the reboot: %w", l.UDID(), errors.Join(ctx.Err(), err))
		}
		if retry.Sleep(ctx, pollInterval) != nil {
			return nil, fmt.Errorf("reach: %s: lockdownd after the reboot: %w", l.UDID(), ctx.Err())
		}
	}
}

// pollInterval is the wait between attempts while a rebooted device's
// lockdownd is not answering yet.
const pollInterval = 250 * time.Millisecond
