package instproxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/iosmux/iosmux/lockdown"
)

// ServerConfig configures the device role.
type ServerConfig struct {
	// Registry holds the apps.
	Registry *Registry
	// Media is the AFC root on the host: PackagePath is resolved inside
	// it (through an os.Root: a path cannot leave it).
	Media string
	// PageSize is the number of apps per Browse reply; 0 means 20
	// (SIM).
	PageSize int
	// OnChange, if set, is called after an app is installed or removed
	// (the simulator posts the notifications).
	OnChange func(bundleID string, installed bool)
	// Timeout bounds each reply's write and reading a request once begun;
	// 0 means lockdown.DefaultTimeout.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Server is the device role of installation_proxy.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
}

// NewServer checks the configuration.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Registry == nil || cfg.Media == "" {
		return nil, errors.New("instproxy: server needs a registry and a media folder")
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = lockdown.DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log}, nil
}

// maxRequest bounds a request frame.
const maxRequest = 1 << 20

// Serve answers commands on conn until the host hangs up, sends something
// that is not a framed dictionary, or ctx ends (docs/protocols/instproxy.md
// §2–§5).
func (s *Server) Serve(ctx context.Context, conn net.Conn) {
	pc := lockdown.NewPlistConn(conn, maxRequest)
	for {
		req, err := pc.ReceiveMessage(ctx)
		if err != nil {
			return
		}
		send := func(m map[string]any) error {
			wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			defer cancel()
			return pc.Send(wctx, m)
		}
		if err := s.command(ctx, req, send); err != nil {
			return
		}
	}
}

type sendFunc func(map[string]any) error

func fail(send sendFunc, name, desc string) error {
	return send(map[string]any{"Error": name, "ErrorDescription": desc})
}

// command answers one request; an error is a broken connection.
func (s *Server) command(ctx context.Context, req lockdown.Message, send sendFunc) error {
	cmd, ok := req.String("Command")
	if !ok {
		return fail(send, ErrorMissingCommand, "The request has no Command.")
	}
	opts, _ := req.Dict("ClientOptions")
	switch cmd {
	case "Browse":
		return s.browse(opts, send)
	case "Lookup":
		m := map[string]any{}
		for _, a := range s.choose(opts) {
			m[a.BundleID()] = map[string]any(a)
		}
		return send(map[string]any{"LookupResult": m, "Status": StatusComplete})
	case "Install", "Upgrade":
		return s.install(ctx, cmd, req, opts, send)
	case "Uninstall":
		id, ok := req.String("ApplicationIdentifier")
		if !ok || id == "" {
			return fail(send, ErrorMissingApplicationIdentifier, "The request has no ApplicationIdentifier.")
		}
		// SIM: the references name no uninstall stages.
		if err := send(map[string]any{"Status": "RemovingApplication", "PercentComplete": 50}); err != nil {
			return err
		}
		removed, err := s.cfg.Registry.Uninstall(id)
		if err != nil {
			de := classify(err)
			return fail(send, de.Name, de.Description)
		}
		if removed && s.cfg.OnChange != nil {
			s.cfg.OnChange(id, false)
		}
		return send(map[string]any{"Status": StatusComplete})
	case "CheckCapabilitiesMatch":
		// SIM: the simulated device has every capability asked for.
		return send(map[string]any{"LookupResult": true, "Status": StatusComplete})
	}
	return fail(send, ErrorUnknownCommand, fmt.Sprintf("Unknown command %s.", cmd))
}

// choose applies ApplicationType, BundleIDs and ReturnAttributes.
func (s *Server) choose(opts lockdown.Message) []App {
	typ, _ := opts.String("ApplicationType")
	var ids, attrs []string
	if l, ok := opts["BundleIDs"].([]any); ok {
		for _, v := range l {
			if id, ok := v.(string); ok {
				ids = append(ids, id)
			}
		}
	}
	if l, ok := opts["ReturnAttributes"].([]any); ok {
		for _, v := range l {
			if a, ok := v.(string); ok {
				attrs = append(attrs, a)
			}
		}
	}
	var out []App
	for _, rec := range s.cfg.Registry.Records() {
		switch {
		case typ == TypeUser && rec.System, typ == TypeSystem && !rec.System:
			continue
		case ids != nil && !slices.Contains(ids, rec.BundleID):
			continue
		}
		a := rec.App()
		if len(attrs) > 0 && !slices.Contains(attrs, "*") {
			sel := App{}
			for _, k := range attrs {
				if v, ok := a[k]; ok {
					sel[k] = v
				}
			}
			a = sel
		}
		out = append(out, a)
	}
	return out
}

// browse sends the apps in pages, then Complete (SIM page size: 20).
func (s *Server) browse(opts lockdown.Message, send sendFunc) error {
	apps := s.choose(opts)
	for i := 0; i < len(apps); i += s.cfg.PageSize {
		page := apps[i:min(i+s.cfg.PageSize, len(apps))]
		list := make([]any, len(page))
		for j, a := range page {
			list[j] = map[string]any(a)
		}
		if err := send(map[string]any{"Status": "BrowsingApplications", "CurrentIndex": i, "CurrentAmount": len(page),
			"Total": len(apps), "CurrentList": list}); err != nil {
			return err
		}
	}
	return send(map[string]any{"Status": StatusComplete})
}

// install resolves PackagePath inside the media folder and installs the
// package there: a .ipa file (recognised by content, not name:
// ideviceinstaller stages it as PublicStaging/<bundle id>) or a folder (a
// .app, or an unpacked Payload).
func (s *Server) install(ctx context.Context, cmd string, req, opts lockdown.Message, send sendFunc) error {
	pkg, ok := req.String("PackagePath")
	if !ok || pkg == "" {
		return fail(send, ErrorMissingPackagePath, "The request has no PackagePath.")
	}
	media, err := os.OpenRoot(s.cfg.Media)
	if err != nil {
		return fail(send, ErrorAPIInternalError, err.Error())
	}
	defer media.Close()
	name := strings.TrimLeft(pkg, "/")
	fi, err := media.Stat(name)
	if err != nil || name == "" {
		// SIM: a staged path that is absent, or outside the media folder.
		return fail(send, ErrorMissingPackagePath, fmt.Sprintf("Failed to stat %s: %s", pkg, errText(err)))
	}
	progress := func(pct int, status string) {
		send(map[string]any{"PercentComplete": pct, "Status": status})
	}
	var rec Record
	if fi.IsDir() {
		sub, err := media.OpenRoot(name)
		if err != nil {
			return fail(send, ErrorMissingPackagePath, err.Error())
		}
		rec, err = s.cfg.Registry.InstallDir(ctx, sub, fi.Name(), progress)
		sub.Close()
		if err != nil {
			return s.installFailed(send, err)
		}
	} else {
		f, err := media.Open(name)
		if err != nil {
			return fail(send, ErrorMissingPackagePath, err.Error())
		}
		rec, err = s.cfg.Registry.InstallFile(ctx, f, fi.Size(), progress)
		f.Close()
		if err != nil {
			return s.installFailed(send, err)
		}
	}
	s.log.Debug("instproxy: installed", "command", cmd, "bundleID", rec.BundleID)
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(rec.BundleID, true)
	}
	return send(map[string]any{"Status": StatusComplete})
}

func (s *Server) installFailed(send sendFunc, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	de := classify(err)
	return fail(send, de.Name, de.Description)
}

func errText(err error) string {
	if err == nil {
		return "empty path"
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "No such file or directory"
	}
	return err.Error()
}
