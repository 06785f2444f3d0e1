package reach

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Opener opens connections to the services of one device. The connection
// it returns is positioned at the service's first byte: RSDCheckin, or
// lockdown's StartService and service TLS, are done. Service clients take
// that connection, so they work the same over either path.
//
// Implementations: *RSD (through a tunnel, or anything serving RSD such as
// iosmux's backend) and *Lockdown (through usbmuxd).
type Opener interface {
	// Open opens a new connection to s. It fails with an error that
	// errors.Is ErrNotListed when the device does not offer s.
	Open(ctx context.Context, s Names) (net.Conn, error)
	// UDID is the device's UDID, for messages.
	UDID() string
}

// DialFunc opens a TCP connection: a net.Dialer's DialContext for a
// kernel TUN or plain TCP (the backend), a userspace stack's DialContext,
// or a proxy's dialer.
type DialFunc = func(ctx context.Context, network, address string) (net.Conn, error)

// ErrNotListed means the device does not offer the service by the path
// used: not in its RSD Handshake, or refused by lockdown's StartService.
var ErrNotListed = errors.New("reach: service not offered by the device")

// NotListedError names the service and device that ErrNotListed is about.
type NotListedError struct {
	UDID    string
	Service string
	Path    string // "RSD" or "lockdown"
	Err     error  // the device's refusal, if any
}

func (e *NotListedError) Error() string {
	s := fmt.Sprintf("reach: %s: the device's %s does not offer %s", e.UDID, e.Path, e.Service)
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	if isDDIService(e.Service) {
		s += "; it comes with the Developer Disk Image: mount it first (iosmux mounter auto-mount)"
	}
	return s
}

func (e *NotListedError) Is(target error) bool { return target == ErrNotListed }
func (e *NotListedError) Unwrap() error        { return e.Err }

func isDDIService(name string) bool {
	for _, s := range []Names{AppService, DeviceInfo, OpenStdioSocket, DebugProxy} {
		if name == s.RSD || name == s.Lockdown {
			return true
		}
	}
	return false
}
