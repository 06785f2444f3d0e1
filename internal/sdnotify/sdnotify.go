// Package sdnotify sends service state to systemd, the small documented
// protocol of sd_notify(3): one datagram of newline-separated VAR=value
// lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
// abstract name written with a leading '@'). A service of Type=notify is
// "started" once it sends READY=1.
package sdnotify

import (
	"fmt"
	"net"
	"time"
)

// States the daemons send.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state to socket, the value of $NOTIFY_SOCKET (the command
// reads the environment). An empty socket means "not run by systemd":
// nothing is sent and the result is nil.
func Notify(socket, state string) error {
	if socket == "" {
		return nil
	}
	if socket[0] == '@' {
		socket = "\x00" + socket[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}
