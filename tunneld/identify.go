package tunneld

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
)

// Identification of devices found by mDNS (discovery.md §2.4, §3.1, §5):
// the advertisements do not carry the UDID, so each monitor asks the
// daemon, which knows the protocols.

// identifyTimeout bounds one identification (connect + handshake).
const identifyTimeout = 5 * time.Second

// identifyNCM reads the UDID from the untrusted RSD handshake on the
// USB-NCM link (peerDeviceInfo / UniqueDeviceID).
func (e *establisher) identifyNCM(ctx context.Context, ev discovery.Event) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, identifyTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", ev.Addr.String())
	if err != nil {
		return "", err
	}
	c, err := rsd.NewClient(ctx, nc, nil)
	if err != nil {
		return "", err
	}
	defer c.Close()
	udid := c.Handshake.Device().UDID
	if udid == "" {
		return "", errors.New("tunneld: the RSD handshake names no device")
	}
	return udid, nil
}

// identifyWiFi reads the device's identity from the RemotePairing
// handshake and accepts it only if we hold a record for it. pymobiledevice3
// instead tries a pair-verify with every record; ours happens when the
// tunnel is established, which fails cleanly for a device that names
// itself falsely.
func (e *establisher) identifyWiFi(ctx context.Context, ev discovery.Event) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, identifyTimeout)
	defer cancel()
	nc, err := establish.Dial(ctx, "tcp", ev.Addr.String())
	if err != nil {
		return "", err
	}
	h := pairing.NewClient(pairing.NewRPPairing(nc), &pairing.ClientConfig{HostName: e.hostName})
	defer h.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	info, err := h.Handshake(ctx)
	if err != nil {
		return "", err
	}
	for _, id := range []string{info.Device.Identifier, info.Device.UDID} {
		if id == "" {
			continue
		}
		if _, err := e.store.Load(id); err == nil {
			return id, nil
		}
	}
	return "", fmt.Errorf("tunneld: no pair record for %s (iosmux pair)", info.Device.Identifier)
}

// identifyMobdev2 matches the instance's Wi-Fi MAC prefix against the
// stored lockdown records (pymobiledevice3's rule); only paired devices
// are tunnelled.
func (e *establisher) identifyMobdev2(_ context.Context, ev discovery.Event) (string, error) {
	udid, _, ok := e.records.byWiFiMAC(ev.WiFiMAC)
	if !ok {
		return "", fmt.Errorf("tunneld: no lockdown pair record for Wi-Fi MAC %q", ev.WiFiMAC)
	}
	return udid, nil
}
