package crash

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/services/reach"
)

// Ping is what com.apple.crashreportmover sends once it has moved the
// pending reports into the crash folder (crash.md §1): "ping" and a NUL,
// in one write, since go-ios reads it with a single read.
var Ping = []byte("ping\x00")

// Flush waits, on a connection to crashreportmover positioned at its first
// byte, for the device to move pending reports, and closes the connection.
// The host sends nothing. Only "ping" is required: hosts read four bytes
// (go-ios, idevice, libimobiledevice) or five (pymobiledevice3, appium).
// ctx bounds the wait.
func Flush(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	var got [4]byte
	err := deadline.Do(ctx, conn, func() error {
		_, err := io.ReadFull(conn, got[:])
		return err
	})
	if err != nil {
		return fmt.Errorf("crash: waiting for crashreportmover's ping: %w", err)
	}
	if !bytes.Equal(got[:], Ping[:4]) {
		return fmt.Errorf("crash: crashreportmover sent %q, want \"ping\"", got[:])
	}
	return nil
}

// FlushReports opens crashreportmover through o and waits for its ping.
func FlushReports(ctx context.Context, o reach.Opener) error {
	conn, err := o.Open(ctx, reach.CrashReportMover)
	if err != nil {
		return err
	}
	if err := Flush(ctx, conn); err != nil {
		return fmt.Errorf("%s: %w", o.UDID(), err)
	}
	return nil
}

// ServeMover is the device role of crashreportmover on conn (positioned
// after RSDCheckin or StartService): it runs move, which puts pending
// reports in the crash folder, then sends Ping in one write. It does not
// wait for the host; the caller closes conn.
func ServeMover(ctx context.Context, conn net.Conn, move func()) error {
	if move != nil {
		move()
	}
	return deadline.Do(ctx, conn, func() error {
		_, err := conn.Write(Ping)
		return err
	})
}
