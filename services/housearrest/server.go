package housearrest

import (
	"context"
	"net"
	"time"

	"github.com/iosmux/iosmux/lockdown"
)

// App is what the device role needs to know of an installed app.
type App struct {
	// Container is the folder holding the app's data container
	// (Documents, Library, tmp).
	Container string
	// System apps are never vended (SIM).
	System bool
	// Developer: installed with a development profile; only these vend
	// their whole container.
	Developer bool
	// FileSharing is UIFileSharingEnabled; only these vend Documents.
	FileSharing bool
}

// Apps looks an installed app up by bundle id.
type Apps interface {
	LookupApp(bundleID string) (App, bool)
}

// ServeAFC serves AFC on conn rooted at root; only, if not empty,
// confines it to that one entry of root ("Documents" for VendDocuments).
type ServeAFC func(ctx context.Context, conn net.Conn, root, only string)

// Server is the device role.
type Server struct {
	Apps Apps
	AFC  ServeAFC
	// Timeout bounds the wait for the host's one command and the reply;
	// 0 means lockdown.DefaultTimeout.
	Timeout time.Duration
}

// Serve reads one command, answers it, and on success serves AFC on the
// same connection until the host hangs up (docs/protocols/housearrest.md
// §5 for the decisions).
func (s *Server) Serve(ctx context.Context, conn net.Conn) {
	to := s.Timeout
	if to <= 0 {
		to = lockdown.DefaultTimeout
	}
	pc := lockdown.NewPlistConn(conn, 64<<10)
	rctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	var req map[string]any
	err := pc.Receive(rctx, &req)
	if err != nil && !lockdown.IsClosed(err) && rctx.Err() == nil {
		// Not a dictionary, or not a plist: answered like an unknown
		// command.
		req = map[string]any{}
	} else if err != nil {
		return
	}
	root, only, failure := s.decide(req)
	if failure != "" {
		pc.Send(rctx, map[string]any{"Error": failure})
		return
	}
	if err := pc.Send(rctx, map[string]any{"Status": "Complete"}); err != nil {
		return
	}
	cancel()
	s.AFC(ctx, conn, root, only)
}

// decide answers a request: the AFC root and confinement, or an error
// name.
func (s *Server) decide(req map[string]any) (root, only, failure string) {
	cmd, _ := req["Command"].(string)
	if cmd != string(VendContainer) && cmd != string(VendDocuments) {
		return "", "", "UnknownCommand"
	}
	id, ok := req["Identifier"].(string)
	if !ok {
		return "", "", "MissingIdentifier"
	}
	app, ok := s.Apps.LookupApp(id)
	switch {
	case !ok:
		return "", "", ErrorApplicationLookupFailed
	case app.System:
		return "", "", ErrorInstallationLookupFailed
	case cmd == string(VendContainer) && !app.Developer:
		return "", "", ErrorInstallationLookupFailed
	case cmd == string(VendDocuments) && !app.FileSharing:
		return "", "", ErrorInstallationLookupFailed
	case cmd == string(VendDocuments):
		return app.Container, "Documents", ""
	}
	return app.Container, "", ""
}
