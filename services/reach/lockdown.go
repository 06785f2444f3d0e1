package reach

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

// Lockdown opens services through usbmuxd: a lockdown session with the
// pair record usbmuxd holds, StartService by lockdown name, a new usbmuxd
// connection to the port it names, and TLS when it asks for it. go-ios and
// libimobiledevice reach the mounter, amfi, installation_proxy and AFC this
// way even on iOS 17+. Safe for concurrent use.
type Lockdown struct {
	Mux    *usbmux.Client
	Device usbmux.DeviceEntry
	// Label names the client to lockdownd; "" means "iosmux".
	Label string
	// Timeout bounds each lockdown exchange; 0 means lockdown's default.
	Timeout time.Duration
}

var _ Opener = (*Lockdown)(nil)

// NewLockdown finds the device with udid among those usbmuxd lists (any
// spelling of the UDID; "" picks the only device attached).
func NewLockdown(ctx context.Context, mux *usbmux.Client, udid string) (*Lockdown, error) {
	list, err := mux.ListDevices(ctx)
	if err != nil {
		return nil, err
	}
	var found []usbmux.DeviceEntry
	for _, d := range list {
		if udid == "" || usbmux.SameUDID(d.UDID(), udid) {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && udid == "":
		return nil, fmt.Errorf("reach: usbmuxd at %s lists no device", mux.Addr())
	case len(found) == 0:
		return nil, fmt.Errorf("reach: usbmuxd at %s does not list %s: is it plugged in?", mux.Addr(), udid)
	case udid == "" && len(found) > 1:
		return nil, fmt.Errorf("reach: usbmuxd lists %d devices: name one with its UDID", len(found))
	}
	// The same device may be listed once per connection (USB, network):
	// the first one usbmuxd reports is the one it prefers.
	return &Lockdown{Mux: mux, Device: found[0]}, nil
}

// UDID is the device's UDID as usbmuxd reports it.
func (l *Lockdown) UDID() string { return l.Device.UDID() }

// Open starts s by its lockdown name and returns the service connection.
func (l *Lockdown) Open(ctx context.Context, s Names) (net.Conn, error) {
	if s.Lockdown == "" {
		return nil, &NotListedError{UDID: l.UDID(), Service: s.String(), Path: "lockdown",
			Err: errors.New("it has no lockdown name; reach it through a tunnel's RSD")}
	}
	conn, _, err := lockdown.OpenService(ctx, l.Mux, l.Device, s.Lockdown, lockdown.ClientConfig{Label: l.Label, Timeout: l.Timeout})
	if errors.Is(err, lockdown.ErrInvalidService) {
		return nil, &NotListedError{UDID: l.UDID(), Service: s.Lockdown, Path: "lockdown", Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("reach: %w", err)
	}
	return conn, nil
}
