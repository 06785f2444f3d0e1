package backend

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iosmux/iosmux/dylib"
	"github.com/iosmux/iosmux/mercury"
	"github.com/iosmux/iosmux/xpc"
)

// The Go side of the dylib protocol (package dylib,
// docs/protocols/coredevice-bridge.md): the bridge finds the dylibs'
// sockets, tells each dylib about the devices its backends serve, and
// answers the Mercury actions the dylib forwards from facts about the real
// devices (package mercury). One bridge serves every backend of a process
// (tunneld runs one backend per device), because a dylib takes one iosmux
// connection at a time.

// BridgeConfig configures a Bridge.
type BridgeConfig struct {
	// Glob finds the dylibs' sockets; "" means DefaultSocketGlob.
	Glob string
	// Scan is how often sockets are looked for and facts re-read; 0 means
	// 2 s. Refresh asks for a pass at once.
	Scan time.Duration
	// Builds are the CoreDeviceService builds the user vouched for: a
	// dylib in another build is refused (its build logged) unless
	// AcceptUnknownBuilds is set. No build has been verified by iosmux.
	Builds              []dylib.Build
	AcceptUnknownBuilds bool
	// Deadline bounds one answer; 0 means dylib.DefaultDeadline.
	Deadline time.Duration
	// Label, if set, is the device name shown in CDS instead of the
	// device's own (the naming policy).
	Label *string
	// StateDir keeps the CoreDevice UUID given to each device
	// (coredevice-ids.json, mode 0600), so CDS knows a device by the same
	// identifier across restarts. Required.
	StateDir string
	// Pairing tells the host's pairing with a device; nil takes the
	// attached tunnel as the proof (see PairingSource).
	Pairing PairingSource
	// Rand supplies the device UUIDs' randomness; nil means crypto/rand.
	Rand io.Reader
	// Logger receives connections, refusals and passthrough reasons; nil
	// discards.
	Logger *slog.Logger
}

// DefaultSocketGlob matches the sockets the dylib creates, one per
// CoreDeviceService process.
const DefaultSocketGlob = "/tmp/iosmux-cds.*.sock"

// Bridge connects backends to the dylibs inside CoreDeviceService.
type Bridge struct {
	cfg BridgeConfig
	log *slog.Logger
	ids *deviceIDs

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	refresh chan struct{}

	mu      sync.Mutex
	members []*member
	clients map[string]*bridgeClient    // by socket path
	facts   map[xpc.UUID]*mercury.Facts // by device UUID: what replies are built from now
	offered map[*Backend]*mercury.Facts // the same, by backend (tests)

	// testHookAnswer, if set, runs before each answer (tests hold a
	// request in flight with it).
	testHookAnswer func()
}

// member is one backend offered through the bridge. Only the bridge's run
// goroutine touches src.
type member struct {
	b       *Backend
	counter mercury.Counter
	forced  atomic.Bool // Refresh asked: ask the fact sources again
	src     sourceFacts
}

// bridgeClient is one dylib connection and the devices it was told about
// (run goroutine only).
type bridgeClient struct {
	c    *dylib.Client
	devs map[xpc.UUID]dylib.RemoteDevice
}

// NewBridge starts looking for dylibs and serving them; Add offers a
// backend's device. Close stops it.
func NewBridge(cfg BridgeConfig) (*Bridge, error) {
	if cfg.Glob == "" {
		cfg.Glob = DefaultSocketGlob
	}
	if _, err := filepath.Match(cfg.Glob, ""); err != nil {
		return nil, err
	}
	if cfg.StateDir == "" {
		return nil, errors.New("backend: BridgeConfig.StateDir is required")
	}
	if cfg.Scan <= 0 {
		cfg.Scan = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	br := &Bridge{cfg: cfg, log: log, refresh: make(chan struct{}, 1),
		ids:     &deviceIDs{path: filepath.Join(cfg.StateDir, "coredevice-ids.json"), rand: cfg.Rand},
		clients: map[string]*bridgeClient{}, facts: map[xpc.UUID]*mercury.Facts{}, offered: map[*Backend]*mercury.Facts{}}
	br.ctx, br.cancel = context.WithCancel(context.Background())
	br.wg.Go(br.run)
	return br, nil
}

// Add offers the device b serves (now and whenever it serves one) to
// CoreDeviceService: DEVICE_ATTACH while b has a device, DETACH when it
// has none. Its Developer Mode and DDI facts come from the device's image
// mounter, asked through b.
func (br *Bridge) Add(b *Backend) {
	br.mu.Lock()
	if !slices.ContainsFunc(br.members, func(m *member) bool { return m.b == b }) {
		br.members = append(br.members, &member{b: b})
	}
	br.mu.Unlock()
	br.kick()
}

// Remove stops offering b's device (the dylibs are told DETACH).
func (br *Bridge) Remove(b *Backend) {
	br.mu.Lock()
	br.members = slices.DeleteFunc(br.members, func(m *member) bool { return m.b == b })
	br.mu.Unlock()
	br.kick()
}

// Refresh asks for a pass now, asking every fact source again (call it
// after a change they would report, such as a DDI mount made elsewhere).
func (br *Bridge) Refresh() {
	br.mu.Lock()
	for _, m := range br.members {
		m.forced.Store(true)
	}
	br.mu.Unlock()
	br.kick()
}

func (br *Bridge) kick() {
	select {
	case br.refresh <- struct{}{}:
	default:
	}
}

// Close disconnects from every dylib (which then passes every message
// through) and waits for the bridge's goroutines.
func (br *Bridge) Close() error {
	br.cancel()
	br.wg.Wait()
	br.mu.Lock()
	cs := br.clients
	br.clients = map[string]*bridgeClient{}
	br.mu.Unlock()
	for _, c := range cs {
		c.c.Close()
	}
	return nil
}

// factsOf returns the facts b's device is offered with now (nil: none).
func (br *Bridge) factsOf(b *Backend) *mercury.Facts {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.offered[b]
}

func (br *Bridge) run() {
	t := time.NewTicker(br.cfg.Scan)
	defer t.Stop()
	for {
		br.pass()
		select {
		case <-br.ctx.Done():
			return
		case <-t.C:
		case <-br.refresh:
		}
	}
}

// pass re-reads every member's facts, pushes what changed to every
// dylib, and connects to new sockets.
func (br *Bridge) pass() {
	br.mu.Lock()
	ms := slices.Clone(br.members)
	br.mu.Unlock()
	fs := make([]*mercury.Facts, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { fs[i] = br.gather(br.ctx, m) })
	}
	wg.Wait()
	if br.ctx.Err() != nil {
		return
	}

	want := map[xpc.UUID]dylib.RemoteDevice{}
	byUUID := map[xpc.UUID]*mercury.Facts{}
	offered := map[*Backend]*mercury.Facts{}
	for i, f := range fs {
		if f == nil {
			continue
		}
		if _, dup := want[f.DeviceUUID]; dup {
			br.log.Warn("backend: one device served by two backends: offered once", "uuid", f.DeviceUUID.String())
			continue
		}
		d, err := br.device(ms[i].b, f)
		if err != nil {
			br.log.Warn("backend: device cannot be offered to CoreDeviceService", "uuid", f.DeviceUUID.String(), "err", err)
			continue
		}
		want[f.DeviceUUID], byUUID[f.DeviceUUID], offered[ms[i].b] = d, f, f
	}
	br.mu.Lock()
	br.facts, br.offered = byUUID, offered
	clients := make(map[string]*bridgeClient, len(br.clients))
	for p, c := range br.clients {
		clients[p] = c
	}
	br.mu.Unlock()

	for p, c := range clients {
		select {
		case <-c.c.Done():
			br.log.Info("backend: dylib connection ended", "socket", p, "err", c.c.Err())
			br.drop(p, c)
			continue
		default:
		}
		br.push(p, c, want)
	}
	paths, _ := filepath.Glob(br.cfg.Glob)
	for _, p := range paths {
		if _, ok := clients[p]; ok {
			continue
		}
		br.connect(p, want)
	}
}

// device is what a dylib is told about b's device: its UUID and
// DeviceIdentifier, the device's Properties with the services as the
// backend serves them, and its name.
func (br *Bridge) device(b *Backend, f *mercury.Facts) (dylib.RemoteDevice, error) {
	sid, err := f.ServiceIdentifier.Value()
	if err != nil {
		return dylib.RemoteDevice{}, err
	}
	props := mercury.Clone(f.Handshake).(*xpc.Dict)
	if v := b.current(); v != nil {
		if s := v.server.HandshakeBody().Dict("Services"); s != nil {
			props.Set("Services", mercury.Clone(s))
		}
	}
	name := f.DeviceName
	if f.Label != nil {
		name = f.Label
	}
	return dylib.RemoteDevice{UUID: f.DeviceUUID, ServiceIdentifier: sid, Properties: props, Name: name, OSState: dylib.OSStateConnected}, nil
}

// sortedUUIDs returns m's keys in a stable order (for stable logs).
func sortedUUIDs[V any](m map[xpc.UUID]V) []xpc.UUID {
	out := make([]xpc.UUID, 0, len(m))
	for u := range m {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b xpc.UUID) int { return cmp.Compare(a.String(), b.String()) })
	return out
}

// push brings one dylib up to date: DETACH what is gone, ATTACH what is
// new, UPDATE what changed.
func (br *Bridge) push(path string, c *bridgeClient, want map[xpc.UUID]dylib.RemoteDevice) {
	var err error
	for _, u := range sortedUUIDs(c.devs) {
		if _, ok := want[u]; ok {
			continue
		}
		if err = c.c.Detach(u); err != nil {
			break
		}
		delete(c.devs, u)
	}
	for _, u := range sortedUUIDs(want) {
		if err != nil {
			break
		}
		d := want[u]
		old, ok := c.devs[u]
		switch {
		case !ok:
			err = c.c.Attach(d)
		case !sameDevice(old, d):
			err = c.c.Update(d)
		default:
			continue
		}
		if err == nil {
			c.devs[u] = d
		}
	}
	if err != nil {
		br.log.Info("backend: dylib unreachable", "socket", path, "err", err)
		br.drop(path, c)
	}
}

func sameDevice(a, b dylib.RemoteDevice) bool {
	return mercury.SameValue(a.Value(), b.Value())
}

func (br *Bridge) drop(path string, c *bridgeClient) {
	c.c.Close()
	br.mu.Lock()
	if br.clients[path] == c {
		delete(br.clients, path)
	}
	br.mu.Unlock()
}

// connect opens one dylib socket, runs the handshake and attaches the
// devices offered now.
func (br *Bridge) connect(path string, want map[xpc.UUID]dylib.RemoteDevice) {
	ctx, cancel := context.WithTimeout(br.ctx, 5*time.Second)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
	if err != nil {
		br.log.Debug("backend: dylib socket", "socket", path, "err", err)
		return
	}
	ids := sortedUUIDs(want)
	c, err := dylib.NewClient(ctx, nc, dylib.ClientConfig{Builds: br.cfg.Builds, AcceptUnknownBuilds: br.cfg.AcceptUnknownBuilds,
		Allow: mercury.AllowList(), Action: br.answer, Deadline: br.cfg.Deadline, Logger: br.log}, ids)
	if err != nil {
		var ub *dylib.UnknownBuildError
		if errors.As(err, &ub) {
			br.log.Warn("backend: dylib refused: iosmux has not been told this CoreDeviceService build works; "+
				"after checking it, allow it with --cds-build "+ub.Build.ID()+" (or --accept-unknown-builds)",
				"socket", path, "pid", ub.PID, "build", ub.Build.String())
		} else {
			br.log.Info("backend: dylib handshake failed", "socket", path, "err", err)
		}
		return
	}
	h := c.Hello()
	if !slices.Contains(br.cfg.Builds, h.Build) {
		br.log.Warn("backend: dylib in an unverified CoreDeviceService build (accepted: --accept-unknown-builds)",
			"socket", path, "build", h.Build.String(), "pin", h.Build.ID())
	}
	br.log.Info("backend: dylib connected", "socket", path, "pid", h.PID, "arch", h.Arch, "dylib", h.DylibVersion)
	bc := &bridgeClient{c: c, devs: map[xpc.UUID]dylib.RemoteDevice{}}
	br.mu.Lock()
	br.clients[path] = bc
	br.mu.Unlock()
	br.push(path, bc, want)
}

// answer is the dylib.ClientConfig.Action: mercury decides from the
// current facts of the device the request names; every passthrough is
// logged with its reason.
func (br *Bridge) answer(ctx context.Context, req *xpc.Dict) dylib.ActionResponse {
	if br.testHookAnswer != nil {
		br.testHookAnswer()
	}
	var f *mercury.Facts
	if s, ok := req.Get(mercury.KeyDeviceIdentifier).(xpc.String); ok {
		if u, err := xpc.ParseUUID(string(s)); err == nil {
			br.mu.Lock()
			if g := br.facts[u]; g != nil {
				c := *g // facts are replaced, never changed in place
				f = &c
			}
			br.mu.Unlock()
		}
	}
	r := mercury.Answer(req, f)
	for _, n := range r.Notes {
		br.log.Warn("backend: "+n, "action", r.Action)
	}
	if r.Disposition != mercury.Reply {
		br.log.Info("backend: CoreDeviceService message passed through", "action", r.Action, "reason", r.Reason)
		return dylib.ActionResponse{Disposition: dylib.DispositionPassthrough}
	}
	out := dylib.ActionResponse{Disposition: dylib.DispositionReply, Reply: r.Reply}
	for _, fu := range r.Followups {
		out.Followups = append(out.Followups, dylib.Followup{Kind: dylib.Kind(fu.Kind), Payload: fu.Payload})
	}
	br.log.Debug("backend: CoreDeviceService action answered", "action", r.Action)
	return out
}
