package lockdown

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/iosmux/iosmux/usbmux"
)

// DialUsbmux connects to lockdownd of an attached device through usbmuxd
// (a Connect to Port).
func DialUsbmux(ctx context.Context, mux *usbmux.Client, deviceID uint32, cfg ClientConfig) (*Client, error) {
	conn, err := mux.Connect(ctx, deviceID, Port)
	if err != nil {
		return nil, fmt.Errorf("lockdown: reach lockdownd: %w", err)
	}
	return NewClient(conn, cfg), nil
}

// ReadPairRecord fetches and parses the record usbmuxd stores for udid;
// usbmux.ErrNoPairRecord means the host never paired with the device.
func ReadPairRecord(ctx context.Context, mux *usbmux.Client, udid string) (*PairRecord, error) {
	b, err := mux.ReadPairRecord(ctx, udid)
	if err != nil {
		return nil, err
	}
	rec, err := ParsePairRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%w (record of %s from usbmuxd)", err, udid)
	}
	return rec, nil
}

// SavePairRecord stores rec in usbmuxd for udid, as pmd3 and
// libimobiledevice do after Pair; deviceID (may be 0) lets usbmuxd tell
// listeners the device is Paired.
func SavePairRecord(ctx context.Context, mux *usbmux.Client, udid string, deviceID uint32, rec *PairRecord) error {
	b, err := rec.Marshal()
	if err != nil {
		return err
	}
	return mux.SavePairRecord(ctx, udid, deviceID, b)
}

// DialService connects to a started service through usbmuxd and runs
// ServiceTLS on the new connection.
func DialService(ctx context.Context, mux *usbmux.Client, deviceID uint32, info ServiceInfo, rec *PairRecord, timeout time.Duration) (net.Conn, error) {
	conn, err := mux.Connect(ctx, deviceID, info.Port)
	if err != nil {
		return nil, fmt.Errorf("lockdown: reach %s: %w", info.Name, err)
	}
	return ServiceTLS(ctx, conn, info, rec, timeout)
}

// OpenService is the whole host dance for one service of a device attached
// through usbmuxd (pmd3's start_lockdown_service, tunnel.md §4, steps
// 1–4): connect to lockdownd, read the pair record usbmuxd holds for the
// device, StartSession (TLS), StartService, close the lockdown connection,
// connect to the service port and run its TLS handshake when asked. The
// returned conn carries the service protocol (for CoreDeviceProxy, the
// CDTunnel handshake comes next). Errors name the step; errors.Is works for
// usbmux.ErrNoPairRecord, ErrInvalidHostID, ErrInvalidService and
// ErrPasswordProtected.
func OpenService(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry, name string, cfg ClientConfig) (net.Conn, ServiceInfo, error) {
	udid := dev.UDID()
	rec, err := ReadPairRecord(ctx, mux, udid)
	if errors.Is(err, usbmux.ErrNoPairRecord) {
		return nil, ServiceInfo{}, fmt.Errorf("lockdown: %s: read pair record: %w; pair it first with 'iosmux lockdown pair --udid %s' (tap Trust on the iPhone)", udid, err, udid)
	}
	if err != nil {
		return nil, ServiceInfo{}, fmt.Errorf("lockdown: %s: read pair record: %w", udid, err)
	}
	return openService(ctx, mux, dev, rec, name, cfg)
}

// openService is OpenService with the record in hand.
func openService(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry, rec *PairRecord, name string, cfg ClientConfig) (net.Conn, ServiceInfo, error) {
	udid := dev.UDID()
	c, err := DialUsbmux(ctx, mux, dev.DeviceID, cfg)
	if err != nil {
		return nil, ServiceInfo{}, fmt.Errorf("lockdown: %s: %w", udid, err)
	}
	defer c.Close()
	if _, err := c.StartSession(ctx, rec); err != nil {
		if errors.Is(err, ErrInvalidHostID) {
			err = fmt.Errorf("%w (the device no longer trusts this host's pair record: pair again with 'iosmux lockdown pair')", err)
		}
		return nil, ServiceInfo{}, fmt.Errorf("lockdown: %s: %w", udid, err)
	}
	info, err := c.StartService(ctx, name, nil)
	if err != nil {
		return nil, ServiceInfo{}, fmt.Errorf("lockdown: %s: %w", udid, err)
	}
	conn, err := DialService(ctx, mux, dev.DeviceID, info, rec, cfg.Timeout)
	if err != nil {
		return nil, ServiceInfo{}, fmt.Errorf("lockdown: %s: %w", udid, err)
	}
	return conn, info, nil
}
