package tunneld

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/rsdapi"
)

// registry is the daemon's tunnel table as rsdapi sees it.
type registry struct {
	d *Daemon
}

var (
	_ rsdapi.Registry         = (*registry)(nil)
	_ rsdapi.Readier          = (*registry)(nil)
	_ rsdapi.ServiceRefresher = (*registry)(nil)
)

func (r *registry) Tunnels() []rsdapi.Tunnel {
	if r.d.mgr == nil {
		return nil
	}
	es := r.d.mgr.Tunnels()
	out := make([]rsdapi.Tunnel, 0, len(es))
	for _, e := range es {
		out = append(out, apiTunnel(e))
	}
	return out
}

func apiTunnel(e entry) rsdapi.Tunnel {
	t := rsdapi.Tunnel{
		UDID: e.UDID, Key: e.Key, Interface: e.Interface, Address: e.Address.String(), RSDPort: e.RSDPort,
		Protocol: string(e.Protocol), Path: pathOf(e.Path),
		CreatedAt: e.Created, UpdatedAt: e.Created,
	}
	if e.Path.Source == discovery.SourceUsbmux {
		t.SerialNumber, t.DeviceID, t.ConnectionType = e.Path.UDID, e.Path.DeviceID, e.Path.ConnectionType
		t.ProductID = uint32(e.Path.ProductID)
	}
	if m := e.Meta; m != nil {
		t.Services, t.CatalogAt = m.catalog()
		if a := m.advert; a != nil {
			t.Address, t.RSDPort, t.Services = a.RSD.Addr().String(), a.RSD.Port(), nil
			if a.Services != nil {
				t.Services = a.Services()
			}
		}
		if t.CatalogAt.After(t.UpdatedAt) {
			t.UpdatedAt = t.CatalogAt
		}
		t.Userspace, t.UserspacePort = m.userspacePort != 0, m.userspacePort
		if m.relay != nil {
			t.LocalAddress = m.relay.Local().String()
		}
	}
	return t
}

// StartTunnel maps GET /start-tunnel onto the manager. connection_type
// restricts the path (usbmux: through usbmuxd; usb: USB-NCM; wifi:
// RemotePairing or mobdev2 over Wi-Fi) and ip its address. Reference
// behaviour kept: a device usbmuxd does not know, when usbmux was allowed,
// is DeviceNotFoundError (501). Unlike pymobiledevice3, a device known only
// by another path is tried over that path when connection_type is absent.
func (r *registry) StartTunnel(ctx context.Context, req rsdapi.StartRequest) (rsdapi.Tunnel, error) {
	if r.d.mgr == nil {
		return rsdapi.Tunnel{}, rsdapi.ErrNoTask
	}
	match := func(ev discovery.Event) bool {
		switch req.Connection {
		case "usbmux":
			if ev.Source != discovery.SourceUsbmux {
				return false
			}
		case "usb":
			if ev.Source != discovery.SourceNCM {
				return false
			}
		case "wifi":
			if ev.Source != discovery.SourceRemotePairing && ev.Source != discovery.SourceMobdev2 {
				return false
			}
		}
		if req.IP != "" && ev.Source != discovery.SourceUsbmux {
			return ev.Addr.IsValid() && (ev.Addr.Addr().String() == req.IP || ev.Addr.Addr().WithZone("").String() == req.IP)
		}
		return true
	}
	e, err := r.d.mgr.Start(ctx, startRequest{UDID: req.UDID, Match: match})
	usbmuxAllowed := req.Connection == "" || req.Connection == "usbmux"
	switch {
	case err == nil:
		return apiTunnel(e), nil
	case errors.Is(err, errUnknownDevice), errors.Is(err, errNoPath):
		if usbmuxAllowed && (errors.Is(err, errUnknownDevice) || req.Connection == "usbmux") {
			return rsdapi.Tunnel{}, deviceNotFound{req.UDID}
		}
		return rsdapi.Tunnel{}, rsdapi.ErrNoTask
	case ctx.Err() != nil:
		return rsdapi.Tunnel{}, ctx.Err()
	case errors.Is(err, errManagerClosed):
		return rsdapi.Tunnel{}, rsdapi.ErrNoTask
	case retryOf(err) != retryBackoff:
		// Why matters to the client (the user refused to pair; the path
		// cannot work): a 501 with the exception name and the message,
		// not the generic 404.
		return rsdapi.Tunnel{}, err
	}
	return rsdapi.Tunnel{}, fmt.Errorf("%w: %w", rsdapi.ErrTunnelFailed, err)
}

// deviceNotFound is pymobiledevice3's DeviceNotFoundError (a 501 whose
// exception name clients print).
type deviceNotFound struct{ udid string }

func (e deviceNotFound) Error() string         { return "tunneld: device not found: " + e.udid }
func (e deviceNotFound) ExceptionName() string { return "DeviceNotFoundError" }
func (e deviceNotFound) Unwrap() error         { return rsdapi.ErrDeviceNotFound }

func (r *registry) Cancel(udid string) {
	if r.d.mgr != nil {
		r.d.mgr.Cancel(udid)
	}
}

func (r *registry) Clear() {
	if r.d.mgr != nil {
		r.d.mgr.Clear()
	}
}

func (r *registry) Shutdown() { r.d.Shutdown() }

// Ready is go-ios's /ready: one discovery pass has had time to report the
// devices present at start (usbmuxd announces them at once; go-ios polls
// every second), and each of them has had its first attempt.
func (r *registry) Ready() bool {
	return r.d.mgr != nil && time.Since(r.d.started) >= time.Second && r.d.mgr.Settled()
}

// RefreshServices reads the trusted RSD catalog of udid's tunnel again
// (appium's POST …/refresh-services).
func (r *registry) RefreshServices(ctx context.Context, udid string) (rsdapi.Tunnel, error) {
	if r.d.mgr == nil {
		return rsdapi.Tunnel{}, errors.New("tunneld: not running")
	}
	for _, e := range r.d.mgr.Tunnels() {
		t := apiTunnel(e)
		if !discovery.SameUDID(t.SerialNumber, udid) && !discovery.SameUDID(t.UDID, udid) {
			continue
		}
		m := e.Meta
		if m != nil && m.advert != nil {
			// The advertised RSD reads the device itself (a session of
			// ours would only displace its one, iOS 27.2): ask it to.
			if f := m.advert.Refresh; f != nil {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := f(ctx)
				cancel()
				if err != nil {
					return t, err
				}
			}
			m.touchCatalog(time.Now())
			return apiTunnel(e), nil
		}
		if m == nil || m.dial == nil {
			return t, errors.New("tunneld: no way to reach this tunnel's RSD")
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		svcs, err := readServices(ctx, m.dial, netip.AddrPortFrom(e.Address, e.RSDPort).String(), r.d.est.hostUUID)
		if err != nil {
			return t, err
		}
		m.setCatalog(svcs, time.Now())
		if m.relay != nil {
			// Ports the device lists now are reachable where it is listed.
			if err := m.relay.AddAll(servicePorts(svcs)); err != nil {
				r.d.log.Warn("tunneld: some of the device's service ports are not relayed at its loopback address", "udid", t.UDID, "err", err)
			}
		}
		return apiTunnel(e), nil
	}
	return rsdapi.Tunnel{}, fmt.Errorf("tunneld: no tunnel for %s", udid)
}

// The APIs' vocabulary for a sighting: the path label the listings and
// metrics show, and pymobiledevice3's table key.

// pathOf names the way a sighting reaches its device, as the APIs and
// metrics label it (rsdapi.Path).
func pathOf(ev discovery.Event) rsdapi.Path {
	switch ev.Source {
	case discovery.SourceUsbmux:
		if ev.ConnectionType == "Network" {
			return rsdapi.PathUsbmuxNetwork
		}
		return rsdapi.PathUsbmuxUSB
	case discovery.SourceNCM:
		return rsdapi.PathUSBNCM
	case discovery.SourceMobdev2:
		return rsdapi.PathMobdev2
	}
	return rsdapi.PathWiFi
}

// pmd3Key is pymobiledevice3's table key for a tunnel over ev to the device
// whose handshake reported udid (tunneld-api.md §1.2): the "interface" GET /
// lists.
func pmd3Key(ev discovery.Event, udid string) string {
	switch ev.Source {
	case discovery.SourceUsbmux:
		return "usbmux-" + ev.UDID + "-" + ev.ConnectionType
	case discovery.SourceMobdev2:
		return "mobdev2-" + udid + "-" + ev.Addr.Addr().String()
	}
	// USB-NCM and Wi-Fi: the device address, with its zone when link-local
	// (netip prints the zone).
	if ev.Addr.IsValid() {
		return ev.Addr.Addr().String()
	}
	return string(ev.Source) + "-" + udid
}
