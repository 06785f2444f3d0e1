package amfi

import (
	"context"
	"net"

	"github.com/iosmux/iosmux/lockdown"
)

// Switch is the Developer Mode state the device role acts on.
type Switch interface {
	// DeveloperMode reports whether Developer Mode is on.
	DeveloperMode() bool
	// Reveal shows the switch in Settings.
	Reveal() error
	// Arm turns Developer Mode on pending the reboot and the user's
	// acceptance; an error (passcode set) is sent as the reply's Error.
	Arm() error
	// Accept completes an armed Developer Mode after its reboot.
	Accept() error
}

// Server is the device role of the amfi service.
type Server struct {
	Device Switch
	// AfterArm, if set, runs once a successful arm's reply has been sent:
	// the device reboots then.
	AfterArm func()
}

// Serve answers requests on conn (positioned after RSDCheckin or
// StartService) until the host hangs up, sends something that is not a
// framed dictionary, or ctx ends. Requests without a known action get
// {Error: "Unsupported action"} (what a device answers is UNCONFIRMED; the
// simulator's choice).
func (s *Server) Serve(ctx context.Context, conn net.Conn) {
	pc := lockdown.NewPlistConn(conn, 64<<10)
	for {
		req, err := pc.ReceiveMessage(ctx)
		if err != nil {
			return
		}
		a, ok := req.Uint("action")
		rep, armed := s.answer(Action(a), ok)
		if err := pc.Send(ctx, rep); err != nil {
			return
		}
		if armed && s.AfterArm != nil {
			s.AfterArm()
			return
		}
	}
}

func (s *Server) answer(a Action, ok bool) (rep map[string]any, armed bool) {
	fail := func(err error) map[string]any { return map[string]any{"Error": err.Error()} }
	if !ok {
		return map[string]any{"Error": "Unsupported action"}, false
	}
	switch a {
	case ActionReveal:
		if err := s.Device.Reveal(); err != nil {
			return fail(err), false
		}
	case ActionArm:
		wasOn := s.Device.DeveloperMode()
		if err := s.Device.Arm(); err != nil {
			return fail(err), false
		}
		// Already on: nothing to reboot for.
		return map[string]any{"success": true}, !wasOn
	case ActionAccept:
		if err := s.Device.Accept(); err != nil {
			return fail(err), false
		}
	case ActionStatus:
		return map[string]any{"success": true, "status": s.Device.DeveloperMode()}, false
	default:
		return map[string]any{"Error": "Unsupported action"}, false
	}
	return map[string]any{"success": true}, false
}
