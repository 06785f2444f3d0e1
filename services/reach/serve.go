package reach

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/iosmux/iosmux/rsd"
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
func ServeRSD(ctx context.Context, conn net.Conn, s Service, h Handler) error {
	switch s.Kind() {
	case Shim:
		cctx, cancel := context.WithTimeout(ctx, CheckinTimeout)
		_, _, err := rsd.ShimServer(cctx, conn, s.RSD)
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
