package tunnel

import (
	"context"
	"errors"
	"fmt"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

// StartCoreDeviceProxy establishes P1 (tunnel.md §4, §10) with a device
// attached through usbmuxd (USB or usbmuxd's network devices): lockdown
// session with usbmuxd's pair record, StartService CoreDeviceProxy, a new
// usbmuxd connection to its port with the service TLS, then CDTunnel, the
// TUN and the pump. The service connection is the whole tunnel; nothing
// else stays open. iOS before 17.4 answers with ErrNoCoreDeviceProxy.
// ctx bounds establishment only.
func StartCoreDeviceProxy(ctx context.Context, mux *usbmux.Client, dev usbmux.Device, opt Options) (*Tunnel, error) {
	udid := dev.UDID()
	conn, _, err := lockdown.OpenService(ctx, mux, dev, lockdown.CoreDeviceProxy, lockdown.ClientConfig{})
	if err != nil {
		if errors.Is(err, lockdown.ErrInvalidService) {
			err = fmt.Errorf("%w: %w", ErrNoCoreDeviceProxy, err)
		}
		return nil, &Error{Device: udid, Step: StepLockdown, Err: err}
	}
	opt.logger().Debug("tunnel: CoreDeviceProxy service connected", "udid", udid)
	return startStream(ctx, conn, udid, PathCoreDeviceProxy, nil, &opt)
}
