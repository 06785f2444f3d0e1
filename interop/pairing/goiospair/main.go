// Command goiospair runs go-ios v1.3.2's RemotePairing client
// (ios/tunnel.ManualPairAndConnectToTunnelTCP: mDNS discovery of
// _remoted._tcp, RSD, pair-verify or pair-setup over the RemoteXPC tunnel
// service, createListener, TLS-PSK and the CDTunnel handshake on a kernel TUN)
// against the device with the given UDID, keeping its pair records in DIR.
// It prints {"address","rsdPort"} of the tunnel as JSON, or fails.
//
// Usage: goiospair UDID DIR
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/tunnel"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: goiospair UDID DIR")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pm, err := tunnel.NewPairRecordManager(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "goiospair:", err)
		os.Exit(1)
	}
	dev := ios.DeviceEntry{Properties: ios.DeviceProperties{SerialNumber: os.Args[1]}}
	t, err := tunnel.ManualPairAndConnectToTunnelTCP(ctx, dev, pm)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goiospair:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]any{"address": t.Address, "rsdPort": t.RsdPort, "udid": t.Udid})
	fmt.Println(string(out))
	if err := t.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "goiospair: close:", err)
	}
}
