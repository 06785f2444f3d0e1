package pairing

import (
	"context"
	"fmt"
	"io"
)

// The lockdown transport (remotepairing.md §1.4): the lockdown
// service com.apple.dt.remotepairingdeviced.lockdown carries exactly the
// RPPairing framing of §1.3. Pair-setup over it needs no Trust prompt
// (password "000000", ClientConfig.Lockdown) and the record it makes is valid
// for RSD and Wi-Fi tunnels; it never creates tunnels itself.

// LockdownServiceName is the lockdown service that carries RemotePairing.
const LockdownServiceName = "com.apple.dt.remotepairingdeviced.lockdown"

// ServiceStarter starts a lockdown service on a paired lockdown session and
// returns the service connection, with TLS already applied when
// StartService asked for it (EnableServiceSSL). The lockdown package's
// client satisfies it through a small adapter; pairing needs nothing else
// from lockdown.
type ServiceStarter interface {
	StartService(ctx context.Context, service string) (io.ReadWriteCloser, error)
}

// DialLockdown starts the RemotePairing lockdown service and returns a
// Transport over it. Use it with ClientConfig.Lockdown set.
func DialLockdown(ctx context.Context, s ServiceStarter) (*RPPairing, error) {
	rw, err := s.StartService(ctx, LockdownServiceName)
	if err != nil {
		return nil, fmt.Errorf("pairing: start %s: %w", LockdownServiceName, err)
	}
	return NewRPPairing(rw), nil
}
