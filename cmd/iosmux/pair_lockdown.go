package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

// lockdownStarter starts lockdown services on a USB device for
// pairing.DialLockdown: a lockdown session with usbmuxd's pair record, then
// StartService and a usbmuxd connection to the service port (TLS when the
// device asks for it). Each start uses a fresh lockdown connection; the
// device closes the RemotePairing service after pair-setup and the host
// reconnects (remotepairing.md §1.4).
type lockdownStarter struct {
	mux *usbmux.Client
	dev usbmux.Device
	rec *lockdown.PairRecord
}

func newLockdownStarter(ctx context.Context, mux *usbmux.Client, dev usbmux.Device) (*lockdownStarter, error) {
	rec, err := lockdown.ReadPairRecord(ctx, mux, dev.UDID())
	if errors.Is(err, usbmux.ErrNoPairRecord) {
		return nil, fmt.Errorf("read lockdown pair record: %w; the device must trust this computer over USB first (or use --rsd)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("read lockdown pair record: %w", err)
	}
	return &lockdownStarter{mux: mux, dev: dev, rec: rec}, nil
}

func (s *lockdownStarter) StartService(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	lc, err := lockdown.DialUsbmux(ctx, s.mux, s.dev.DeviceID, lockdown.ClientConfig{})
	if err != nil {
		return nil, fmt.Errorf("connect to lockdownd: %w", err)
	}
	// The service connection outlives this one, as in pymobiledevice3.
	defer lc.Close()
	if _, err := lc.StartSession(ctx, s.rec); err != nil {
		if errors.Is(err, lockdown.ErrInvalidHostID) {
			err = fmt.Errorf("%w (the device no longer trusts this host's lockdown pair record)", err)
		}
		return nil, fmt.Errorf("StartSession: %w", err)
	}
	info, err := lc.StartService(ctx, name, nil)
	if err != nil {
		return nil, fmt.Errorf("StartService %s: %w", name, err)
	}
	conn, err := lockdown.DialService(ctx, s.mux, s.dev.DeviceID, info, s.rec, 0)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", name, err)
	}
	return conn, nil
}
