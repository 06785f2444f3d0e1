package reach

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/iosmux/iosmux/lockdown"
)

// CheckinTimeout bounds the device's wait for a host's RSDCheckin.
const CheckinTimeout = 30 * time.Second

// Handler serves one connection to a service, positioned at the service's
// first byte. It owns conn until it returns; the caller closes conn after.
// ctx ends when the device goes away.
type Handler func(ctx context.Context, conn net.Conn)

// ServeRSD is the device side of one connection to s's RSD port: for a
// shim it answers RSDCheckin (both replies), for a raw service it does
// nothing, and then it runs h. A handler registered once is thereby served
// both by RSD name and, given to lockdownd for StartService, by lockdown
// name. RemoteXPC services are not served here (their handlers take an
// xpc connection).
func ServeRSD(ctx context.Context, conn net.Conn, s Names, h Handler) error {
	switch s.Kind() {
	case Shim:
		cctx, cancel := context.WithTimeout(ctx, CheckinTimeout)
		_, _, err := lockdown.ShimServer(cctx, conn, s.RSD)
		cancel()
		if err != nil {
			return err
		}
	case Raw:
	default:
		return fmt.Errorf("reach: %s is a RemoteXPC service; serve it with an xpc server", s.RSD)
	}
	h(ctx, conn)
	return nil
}

// WatchHangup is for device roles of services where the host sends nothing
// once the stream starts (syslog_relay, an os_trace activity): it reads and
// drops what the host sends, and the context it returns ends when the host
// hangs up (or ctx does), with the read's error as the cause. stop ends the
// watch and returns once its goroutine has; call it before conn is closed
// or reused.
func WatchHangup(ctx context.Context, conn net.Conn) (watched context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := io.Copy(io.Discard, conn)
		if err == nil {
			err = io.EOF
		}
		cancel(err)
	}()
	return ctx, func() {
		_ = conn.SetReadDeadline(time.Unix(1, 0))
		<-done
		cancel(nil)
		_ = conn.SetReadDeadline(time.Time{})
	}
}
