// Command goiosagent is what go-ios v1.3.2 does with a tunnel agent, run
// against iosmux tunneld: IsAgentRunning, WaitUntilAgentReady,
// ListRunningTunnels and TunnelInfoForDevice (ios/tunnel), then go-ios's own
// RSD client (ios.NewWithAddrPortDevice + Handshake) to every listed
// tunnel's address and port, as `ios` commands needing a tunnel do
// (cli_device_resolution.go: a userspace tunnel is reached through the
// agent host's userspace proxy port). It prints what it read as JSON.
// Usage: goiosagent (GO_IOS_AGENT_HOST/PORT select the agent).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/tunnel"
)

type device struct {
	Tunnel   tunnel.Tunnel
	ByUDID   tunnel.Tunnel
	RSDUDID  string
	Services int
	Err      string
}

type result struct {
	Running bool
	Ready   bool
	Devices []device
	Err     string
}

func main() {
	host, port := ios.HttpApiHost(), ios.HttpApiPort()
	var r result
	r.Running = tunnel.IsAgentRunning()
	r.Ready = tunnel.WaitUntilAgentReady()
	list, err := tunnel.ListRunningTunnels(host, port)
	if err != nil {
		r.Err = err.Error()
	}
	for _, t := range list {
		d := device{Tunnel: t}
		if d.ByUDID, err = tunnel.TunnelInfoForDevice(t.Udid, host, port); err != nil {
			d.Err = fmt.Sprintf("TunnelInfoForDevice: %v", err)
		} else if s, err := ios.NewWithAddrPortDevice(t.Address, t.RsdPort, ios.DeviceEntry{
			UserspaceTUN: d.ByUDID.UserspaceTUN, UserspaceTUNHost: host, UserspaceTUNPort: d.ByUDID.UserspaceTUNPort,
		}); err != nil {
			d.Err = fmt.Sprintf("RSD connect: %v", err)
		} else {
			h, err := s.Handshake()
			s.Close()
			if err != nil {
				d.Err = fmt.Sprintf("RSD handshake: %v", err)
			}
			d.RSDUDID, d.Services = h.Udid, len(h.Services)
		}
		r.Devices = append(r.Devices, d)
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		os.Exit(1)
	}
}
