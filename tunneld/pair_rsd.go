package tunneld

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// pairOverRSD pairs with a device on its USB-NCM link when no RemotePairing
// record verifies, as pymobiledevice3's tunneld does there (discovery.md
// §2.4 step 4: pair-setup, the Trust dialog, reconnect, verify): the
// untrusted RSD at addr names the tunnel service, whose RemoteXPC
// connections carry pairing.Pair. The record goes to the record folder.
// Over Wi-Fi nothing is paired: a record must exist (iosmux pair).
func (e *establisher) pairOverRSD(ctx context.Context, addr, udid string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("untrusted RSD: %w", err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: e.hostUUID, XPC: &xpc.Config{Name: "rsd " + addr, Logger: e.log}})
	if err != nil {
		return err
	}
	defer c.Close()
	if dev := c.Handshake.Device(); udid != "" && dev.UDID != "" && !strings.EqualFold(udid, dev.UDID) {
		return fmt.Errorf("untrusted RSD at %s is device %s, not %s", addr, dev.UDID, udid)
	}
	svc, ok := c.Handshake.Service(pairing.TunnelServiceName)
	if !ok {
		return fmt.Errorf("the RSD lists no %s", pairing.TunnelServiceName)
	}
	svcAddr := net.JoinHostPort(host, strconv.Itoa(int(svc.Port)))
	e.log.Info("tunneld: pairing over USB-NCM (accept the Trust dialog on the device)", "udid", udid)
	res, err := pairing.Pair(ctx, &pairing.PairConfig{
		Host:  pairing.HostConfig{HostName: e.hostName, Logger: e.log},
		Store: e.store,
		Dial: func(ctx context.Context) (pairing.Transport, error) {
			nc, err := d.DialContext(ctx, "tcp", svcAddr)
			if err != nil {
				return nil, err
			}
			xc, err := xpc.Client(ctx, nc, &xpc.Config{Name: "tunnelservice " + svcAddr, Logger: e.log})
			if err != nil {
				return nil, err
			}
			return pairing.NewXPC(xc), nil
		},
	})
	if err != nil {
		return err
	}
	e.log.Info("tunneld: paired", "udid", udid, "record", res.Path)
	return nil
}
