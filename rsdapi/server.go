package rsdapi

import (
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Default ports of the three APIs (tunneld-api.md §1.1, §2.1, §3.1). They do
// not collide, so all three can be served at once.
const (
	DefaultPMD3Port   = 49151 // pymobiledevice3 tunneld (TUNNELD_DEFAULT_ADDRESS)
	DefaultGoIOSPort  = 60105 // go-ios agent (GO_IOS_AGENT_PORT default)
	DefaultAppiumPort = 42314 // appium-ios-remotexpc tunnel registry
)

// Config configures a Server. Registry is required; everything else has a
// default.
type Config struct {
	Registry Registry

	// Logger receives debug lines (unreachable upstreams) and, at info
	// level, who called /shutdown, /clear_tunnels or /cancel (go-ios:
	// /shutdown, DELETE /tunnel/…); nil discards.
	Logger *slog.Logger

	// Metrics, when set, is served at GET /metrics of the pymobiledevice3
	// API: the daemon's Prometheus exposition.
	Metrics http.Handler
	// OnRequest, when set, is called once each request has been answered,
	// with the API's name ("pmd3", "goios", "appium") and the status code:
	// the daemon's request counter.
	OnRequest func(api string, code int)

	// AllowedHosts are extra host names (besides IP literals and
	// "localhost") accepted in the Host header, e.g. the --host name.
	AllowedHosts []string

	// MaxBodyBytes bounds request bodies; default 64 KiB.
	MaxBodyBytes int64

	// UpstreamTimeout bounds each upstream tunneld fetch of GET /; default
	// 2 s (pymobiledevice3's _UPSTREAM_FETCH_TIMEOUT). MaxUpstreams bounds
	// POST /upstream; default 64.
	UpstreamTimeout time.Duration
	MaxUpstreams    int
	// UpstreamClient fetches upstream listings; default: a client with
	// UpstreamTimeout and no proxy.
	UpstreamClient *http.Client

	// Now is the clock for appium timestamps; default time.Now.
	Now func() time.Time
}

// Server holds the state shared by the three API handlers: the registry,
// the upstream set, the change signal for long-polls and appium's stored
// entries.
type Server struct {
	reg       Registry
	log       *slog.Logger
	metrics   http.Handler
	onRequest func(api string, code int)
	guard     *guard
	maxBody   int64
	now       func() time.Time
	upstream  *upstreams

	changeMu sync.Mutex
	changed  chan struct{} // closed and replaced by Notify

	appium *appiumStore
}

// New returns a Server over cfg.Registry.
func New(cfg Config) *Server {
	if cfg.Registry == nil {
		panic("rsdapi: Config.Registry is nil")
	}
	s := &Server{
		reg:       cfg.Registry,
		log:       cfg.Logger,
		metrics:   cfg.Metrics,
		onRequest: cfg.OnRequest,
		guard:     newGuard(cfg.AllowedHosts),
		maxBody:   cfg.MaxBodyBytes,
		now:       cfg.Now,
		changed:   make(chan struct{}),
		appium:    newAppiumStore(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = 64 << 10
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.upstream = newUpstreams(cfg.UpstreamClient, cfg.UpstreamTimeout, cfg.MaxUpstreams, s.maxBody*16)
	return s
}

// Notify tells waiting long-polls (appium's ?waitMs=) that the registry
// changed. The daemon calls it after every table change; it never blocks.
func (s *Server) Notify() {
	s.changeMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changeMu.Unlock()
}

// changes returns a channel closed at the next Notify.
func (s *Server) changes() <-chan struct{} {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	return s.changed
}

// statusRecorder remembers the status code for the request counter.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// wrap applies what all three APIs share: the Host/Origin guard, the body
// bound and the request counter. refuse writes the API's own error shape.
func (s *Server) wrap(api string, refuse func(w http.ResponseWriter, code int, msg string), h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.onRequest != nil {
			rec := &statusRecorder{ResponseWriter: w}
			defer func() {
				code := rec.code
				if code == 0 {
					code = http.StatusOK
				}
				s.onRequest(api, code)
			}()
			w = rec
		}
		if msg := s.guard.check(r); msg != "" {
			refuse(w, http.StatusForbidden, msg)
			return
		}
		if r.ContentLength > s.maxBody {
			refuse(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
		h(w, r)
	})
}

// audit logs, at info level, a request that stops the daemon or tears
// tunnels down: anyone who reaches the port may send one, so the log says
// who did (peer address) and what (the request line).
func (s *Server) audit(api string, r *http.Request) {
	s.log.Info("rsdapi: request", "api", api, "peer", r.RemoteAddr, "request", r.Method+" "+r.URL.RequestURI()+" "+r.Proto)
}

// NewHTTPServer returns an http.Server for one of the handlers with the
// bounds every listener should have: header size and read timeouts (a slow
// client cannot hold a connection forever) but no write timeout, because
// /start-tunnel and appium's long-poll legitimately block.
func NewHTTPServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	}
	return srv
}

// ListenAddr joins host and port the way the CLI flags give them.
func ListenAddr(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
