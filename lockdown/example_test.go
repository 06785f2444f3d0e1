package lockdown_test

import (
	"context"
	"net"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

// Example_simulator wires a simulated iPhone the way sim/ can: a lockdown
// device role on port 62078 of a usbmux server, offering CoreDeviceProxy,
// and a host reaching that service with OpenService.
func Example_simulator() {
	ports := usbmux.NewPortMux(0)
	dev, err := lockdown.NewServer(lockdown.ServerConfig{
		Values: map[string]any{"UniqueDeviceID": "00008110-001A2B3C0E01401E", "ProductVersion": "17.5"},
		Services: map[string]lockdown.ServiceHandler{
			// serveCDTunnel would be the tunnel package's device side.
			lockdown.CoreDeviceProxy: {SSL: true, Serve: func(c net.Conn) { c.Close() }},
		},
		Ports: ports,
	})
	if err != nil {
		panic(err)
	}
	defer dev.Close()
	ports.Handle(lockdown.Port, dev.ServeConn)

	srv := usbmux.NewServer(usbmux.ServerConfig{})
	defer srv.Close()
	srv.AddDevice(usbmux.DeviceEntry{SerialNumber: "00008110001A2B3C0E01401E", ConnectionType: usbmux.ConnectionUSB}, ports)
	l, err := net.Listen("unix", "/tmp/iosmux-example-usbmuxd")
	if err != nil {
		panic(err)
	}
	go srv.Serve(l) // ends when srv.Close closes l

	// Host side (after pairing, which stored a record in usbmuxd).
	ctx := context.Background()
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: "/tmp/iosmux-example-usbmuxd"}})
	devs, err := mux.ListDevices(ctx)
	if err != nil || len(devs) == 0 {
		return
	}
	conn, _, err := lockdown.OpenService(ctx, mux, devs[0], lockdown.CoreDeviceProxy, lockdown.ClientConfig{})
	if err != nil {
		return // unpaired here: usbmux.ErrNoPairRecord
	}
	defer conn.Close()
	// conn is the TLS stream on which the CDTunnel handshake starts.
}
