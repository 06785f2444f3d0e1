// Command goiosclient drives go-ios v1.3.2's own agent-API client
// (ios/tunnel) against the agent at GO_IOS_AGENT_HOST:GO_IOS_AGENT_PORT and
// prints what it read as JSON. Usage: goiosclient <udid-listed> <udid-to-stop>
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/tunnel"
)

type result struct {
	Running     bool
	Ready       bool
	List        []tunnel.Tunnel
	ListErr     string
	One         tunnel.Tunnel
	OneErr      string
	UnknownErr  string
	NotFound    bool
	StopErr     string
	StopAgain   string
	StopAgainNF bool
	CloseErr    string
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: goiosclient <udid> <udid-to-stop>")
		os.Exit(2)
	}
	host, port := ios.HttpApiHost(), ios.HttpApiPort()
	var r result
	r.Running = tunnel.IsAgentRunning()
	r.Ready = tunnel.WaitUntilAgentReady()
	var err error
	r.List, err = tunnel.ListRunningTunnels(host, port)
	r.ListErr = errText(err)
	r.One, err = tunnel.TunnelInfoForDevice(os.Args[1], host, port)
	r.OneErr = errText(err)
	_, err = tunnel.TunnelInfoForDevice("nope", host, port)
	r.UnknownErr, r.NotFound = errText(err), errors.Is(err, tunnel.ErrTunnelNotFound)
	r.StopErr = errText(tunnel.StopTunnelForDevice(os.Args[2], host, port))
	err = tunnel.StopTunnelForDevice(os.Args[2], host, port)
	r.StopAgain, r.StopAgainNF = errText(err), errors.Is(err, tunnel.ErrTunnelNotFound)
	r.CloseErr = errText(tunnel.CloseAgent())
	json.NewEncoder(os.Stdout).Encode(r)
}
