// Command goiossim drives go-ios v1.3.2's tunnel clients (ios/tunnel, which
// the interop module cannot compile, see go.mod) against a simulated iPhone
// and prints what it got as JSON.
//
//	goiossim lockdown UDID PORT   CoreDeviceProxy through usbmuxd
//	                              (USBMUXD_SOCKET_ADDRESS) in userspace mode
//	                              with its forwarder on 127.0.0.1:PORT; then
//	                              the trusted RSD and the simulator's echo
//	                              service through that forwarder
//	goiossim pair UDID DIR        RemotePairing: mDNS _remoted._tcp, RSD,
//	                              pair-verify or pair-setup over the tunnel
//	                              service, createListener, TLS-PSK, CDTunnel
//	                              on a kernel TUN (records in DIR); then the
//	                              trusted RSD through the TUN
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/tunnel"
)

// echoService is the simulator's echo service (sim.EchoService).
const echoService = "com.iosmux.sim.echo"

type result struct {
	Address  string   `json:"address"`
	RsdPort  int      `json:"rsdPort"`
	UDID     string   `json:"udid"`     // from the tunnel
	RsdUDID  string   `json:"rsdUdid"`  // from the trusted RSD Handshake
	Services []string `json:"services"` // trusted RSD service names
	Echo     bool     `json:"echo"`     // bytes came back through the tunnel
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: goiossim lockdown UDID PORT | goiossim pair UDID DIR")
		os.Exit(2)
	}
	var r result
	var err error
	switch os.Args[1] {
	case "lockdown":
		r, err = lockdown(os.Args[2], os.Args[3])
	case "pair":
		r, err = pair(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "goiossim:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}

func findDevice(udid string) (ios.DeviceEntry, error) {
	list, err := ios.ListDevices()
	if err != nil {
		return ios.DeviceEntry{}, err
	}
	for _, d := range list.DeviceList {
		if d.Properties.SerialNumber == udid {
			return d, nil
		}
	}
	return ios.DeviceEntry{}, fmt.Errorf("device %s not listed by usbmuxd", udid)
}

func lockdown(udid, portText string) (result, error) {
	port, err := strconv.Atoi(portText)
	if err != nil {
		return result{}, err
	}
	dev, err := findDevice(udid)
	if err != nil {
		return result{}, err
	}
	t, err := tunnel.ConnectUserSpaceTunnelLockdown(dev, port)
	if err != nil {
		return result{}, fmt.Errorf("lockdown tunnel: %w", err)
	}
	defer t.Close()
	dev.UserspaceTUN = true
	dev.UserspaceTUNHost = "127.0.0.1"
	dev.UserspaceTUNPort = port
	return throughTunnel(t, dev)
}

func pair(udid, dir string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pm, err := tunnel.NewPairRecordManager(dir)
	if err != nil {
		return result{}, err
	}
	dev := ios.DeviceEntry{Properties: ios.DeviceProperties{SerialNumber: udid}}
	t, err := tunnel.ManualPairAndConnectToTunnelTCP(ctx, dev, pm)
	if err != nil {
		return result{}, fmt.Errorf("RemotePairing tunnel: %w", err)
	}
	defer t.Close()
	if err := waitSourceAddress(ctx, t.Address); err != nil {
		return result{}, err
	}
	return throughTunnel(t, dev)
}

// waitSourceAddress waits until the kernel routes to the device from an
// address of the tunnel's /64. go-ios returns as soon as it has added that
// address to its TUN; until the kernel has it ready, a connection would
// leave with another interface's address and never be answered. (go-ios's
// own agent serves clients later, so it never hits this.)
func waitSourceAddress(ctx context.Context, device string) error {
	dst, err := netip.ParseAddr(device)
	if err != nil {
		return err
	}
	prefix, _ := dst.Prefix(64)
	for {
		c, err := net.Dial("udp", netip.AddrPortFrom(dst, 9).String())
		if err == nil {
			src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
			c.Close()
			if prefix.Contains(src) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the tunnel address never became usable: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// throughTunnel reads the trusted RSD and echoes through the tunnel the way
// go-ios's service clients reach the device (ios.ConnectTUNDevice).
func throughTunnel(t tunnel.Tunnel, dev ios.DeviceEntry) (result, error) {
	r := result{Address: t.Address, RsdPort: t.RsdPort, UDID: t.Udid}
	rsd, err := ios.NewWithAddrPortDevice(t.Address, t.RsdPort, dev)
	if err != nil {
		return r, fmt.Errorf("trusted RSD: %w", err)
	}
	defer rsd.Close()
	h, err := rsd.Handshake()
	if err != nil {
		return r, fmt.Errorf("trusted RSD handshake: %w", err)
	}
	r.RsdUDID = h.Udid
	for name := range h.Services {
		r.Services = append(r.Services, name)
	}
	sort.Strings(r.Services)
	port := h.GetPort(echoService)
	conn, err := ios.ConnectTUNDevice(t.Address, port, dev)
	if err != nil {
		return r, fmt.Errorf("echo service: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	msg := bytes.Repeat([]byte("go-ios through the simulated tunnel\n"), 4096)
	errc := make(chan error, 1)
	go func() { _, err := conn.Write(msg); errc <- err }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return r, fmt.Errorf("echo: %w", err)
	}
	if err := <-errc; err != nil {
		return r, fmt.Errorf("echo write: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return r, errors.New("echo: bytes differ")
	}
	r.Echo = true
	return r, nil
}
