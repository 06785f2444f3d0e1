// Command goiossyslog is go-ios v1.3.2's `ios syslog` for one device, made
// of the same library calls its main.go's runSyslog makes (the connection
// over usbmuxd lockdown, ReadLogMessage with its vis decoding, the
// terminator trimmed, the default JSON output {"msg": line}), so that the
// benchmark runs go-ios's syslog client as a process of its own. go-ios's
// own main package cannot be built in the interop module (its userspace
// tunnel needs an older gVisor).
//
// Usage: USBMUXD_SOCKET_ADDRESS=unix:///path goiossyslog UDID
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	ios "github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/syslog"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: goiossyslog UDID")
		os.Exit(2)
	}
	device, err := ios.GetDevice(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	conn, err := syslog.New(device)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	msg := map[string]string{}
	for {
		m, err := conn.ReadLogMessage()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		m = strings.TrimSuffix(m, "\x00")
		m = strings.TrimSuffix(m, "\x0A")
		msg["msg"] = m
		b, _ := json.Marshal(msg)
		fmt.Println(string(b)) // as go-ios: one write per line

	}
}
