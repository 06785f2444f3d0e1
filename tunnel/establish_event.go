package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/usbmux"
)

// ErrUnsupportedPath means a sighting offers no tunnel path iosmux implements (a
// mobdev2 sighting: lockdown over Wi-Fi without usbmuxd).
var ErrUnsupportedPath = errors.New("tunnel: no tunnel path for this kind of sighting")

// Establish builds a tunnel over the path a discovery event describes —
// the manager's Establisher (one tunnel per UDID) calls it:
//
//	usbmux         StartCoreDeviceProxy through mux (P1, iOS ≥ 17.4)
//	ncm            StartRSD at ev.Addr (P2, USB-NCM)
//	remotepairing  StartRemotePairing at ev.Addr (P3, Wi-Fi)
//
// ev.UDID, when known, becomes opt.UDID unless that is set. mux is needed
// for usbmux sightings only.
func Establish(ctx context.Context, ev discovery.Event, mux *usbmux.Client, opt Options) (*Tunnel, error) {
	if opt.UDID == "" {
		opt.UDID = ev.UDID
	}
	addr := net.JoinHostPort(ev.Addr.Addr().String(), strconv.Itoa(int(ev.Addr.Port())))
	switch ev.Source {
	case discovery.SourceUsbmux:
		if mux == nil {
			return nil, &Error{Device: ev.UDID, Step: StepUsbmux, Err: errors.New("no usbmuxd client")}
		}
		dev := usbmux.Device{DeviceID: ev.DeviceID, SerialNumber: ev.UDID, ConnectionType: ev.ConnectionType, ProductID: ev.ProductID}
		return StartCoreDeviceProxy(ctx, mux, dev, opt)
	case discovery.SourceNCM:
		if !ev.Addr.IsValid() {
			return nil, &Error{Device: ev.UDID, Step: StepRSD, Err: errors.New("sighting without an address")}
		}
		return StartRSD(ctx, addr, opt)
	case discovery.SourceRemotePairing:
		if !ev.Addr.IsValid() {
			return nil, &Error{Device: ev.UDID, Step: StepControl, Err: errors.New("sighting without an address")}
		}
		return StartRemotePairing(ctx, addr, opt)
	}
	return nil, &Error{Device: ev.UDID, Step: string(ev.Source), Err: fmt.Errorf("%w (%s)", ErrUnsupportedPath, ev.Source)}
}
