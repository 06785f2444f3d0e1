package backend

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/iosmux/iosmux/dylib"
	"github.com/iosmux/iosmux/mercury"
	"github.com/iosmux/iosmux/xpc"
)

// The Go side of the dylib protocol (package dylib,
// docs/protocols/coredevice-bridge.md): the backend finds the dylib's
// sockets, tells each dylib about the device it serves, and answers the
// Mercury actions the dylib forwards from facts about the real device
// (package mercury).

// BridgeConfig configures a Bridge.
type BridgeConfig struct {
	// Glob finds the dylibs' sockets; "" means DefaultSocketGlob.
	Glob string
	// Scan is how often sockets are looked for and facts re-read; 0 means
	// 2 s. Refresh asks for a pass at once.
	Scan time.Duration
	// Builds are the CoreDeviceService builds known to work;
	// AcceptUnknownBuilds lets any build in (logged).
	Builds              []dylib.Build
	AcceptUnknownBuilds bool
	// Deadline bounds one answer; 0 means dylib.DefaultDeadline.
	Deadline time.Duration
	// Label, if set, is the device name shown in CDS instead of the
	// device's own (the naming policy).
	Label *string
	// Pairing and Developer are the fact sources beyond the backend's own
	// view; nil as documented on each interface.
	Pairing   PairingSource
	Developer DeveloperSource
}

// DefaultSocketGlob matches the sockets the dylib creates, one per
// CoreDeviceService process.
const DefaultSocketGlob = "/tmp/iosmux-cds.*.sock"

// Bridge connects the backend to the dylibs inside CoreDeviceService.
type Bridge struct {
	b   *Backend
	cfg BridgeConfig
	log logger
	ids *deviceIDs

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	refresh chan struct{}
	counter mercury.Counter

	mu      sync.Mutex
	clients map[string]*bridgeClient // by socket path
	facts   *mercury.Facts           // nil while no device is offered
	dev     *dylib.Device            // what the dylibs were last told
	names   map[*view]*string
	sources sourceFacts // the fact sources' last answers
	forced  bool        // Refresh asked: ask the sources again

	// testHookAnswer, if set, runs before each answer (tests hold a
	// request in flight with it).
	testHookAnswer func()
}

type logger interface {
	Debug(msg string, args ...any)
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
}

// bridgeClient is one dylib connection and the device it was told about.
type bridgeClient struct {
	c   *dylib.Client
	dev *dylib.Device // attached device, or nil
}

// StartBridge starts looking for dylibs and serving them. Close stops it.
func (b *Backend) StartBridge(cfg BridgeConfig) (*Bridge, error) {
	if cfg.Glob == "" {
		cfg.Glob = DefaultSocketGlob
	}
	if _, err := filepath.Match(cfg.Glob, ""); err != nil {
		return nil, err
	}
	if cfg.Scan <= 0 {
		cfg.Scan = 2 * time.Second
	}
	br := &Bridge{b: b, cfg: cfg, log: b.log, refresh: make(chan struct{}, 1),
		ids:     &deviceIDs{path: filepath.Join(b.cfg.StateDir, "coredevice-ids.json"), rand: b.cfg.Rand},
		clients: map[string]*bridgeClient{}, names: map[*view]*string{}}
	br.ctx, br.cancel = context.WithCancel(b.ctx)
	br.wg.Go(br.run)
	return br, nil
}

// Refresh asks for a pass now, asking the fact sources again (call it
// after a change they would report, such as a DDI mount).
func (br *Bridge) Refresh() {
	br.mu.Lock()
	br.forced = true
	br.mu.Unlock()
	select {
	case br.refresh <- struct{}{}:
	default:
	}
}

// Close disconnects from every dylib (which then passes every message
// through) and waits for the bridge's goroutines.
func (br *Bridge) Close() error {
	br.cancel()
	br.mu.Lock()
	cs := br.clients
	br.clients = map[string]*bridgeClient{}
	br.mu.Unlock()
	for _, c := range cs {
		c.c.Close()
	}
	br.wg.Wait()
	return nil
}

// Facts returns the facts replies are built from now (nil: no device).
func (br *Bridge) Facts() *mercury.Facts {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.facts
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

// pass re-reads the facts, pushes what changed to every dylib, and
// connects to new sockets.
func (br *Bridge) pass() {
	f, _ := br.gather(br.ctx)
	var dev *dylib.Device
	if f != nil {
		d, err := br.device(f)
		if err != nil {
			br.log.Warn("backend: device cannot be offered to CoreDeviceService", "err", err)
			f = nil
		} else {
			dev = &d
		}
	}
	br.mu.Lock()
	br.facts, br.dev = f, dev
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
		br.push(p, c, dev)
	}
	paths, _ := filepath.Glob(br.cfg.Glob)
	for _, p := range paths {
		if _, ok := clients[p]; ok {
			continue
		}
		br.connect(p, dev)
	}
}

// device is what a dylib is told about the device: its UUID and
// DeviceIdentifier, the device's Properties with the services as the
// backend serves them, and its name.
func (br *Bridge) device(f *mercury.Facts) (dylib.Device, error) {
	sid, err := f.ServiceIdentifier.Value()
	if err != nil {
		return dylib.Device{}, err
	}
	props := mercury.Clone(f.Handshake).(*xpc.Dict)
	if v := br.b.current(); v != nil {
		if s := v.server.HandshakeBody().Dict("Services"); s != nil {
			props.Set("Services", mercury.Clone(s))
		}
	}
	return dylib.Device{UUID: f.DeviceUUID, ServiceIdentifier: sid, Properties: props, Name: f.DeviceName, OSState: dylib.OSStateConnected}, nil
}

// push brings one dylib up to date: ATTACH, UPDATE on any change, DETACH.
func (br *Bridge) push(path string, c *bridgeClient, dev *dylib.Device) {
	var err error
	switch {
	case dev == nil && c.dev != nil:
		err = c.c.Detach(c.dev.UUID)
	case dev != nil && (c.dev == nil || c.dev.UUID != dev.UUID):
		if c.dev != nil {
			if err = c.c.Detach(c.dev.UUID); err != nil {
				break
			}
		}
		err = c.c.Attach(*dev)
	case dev != nil && !sameDevice(*c.dev, *dev):
		err = c.c.Update(*dev)
	default:
		return
	}
	if err != nil {
		br.log.Info("backend: dylib unreachable", "socket", path, "err", err)
		br.drop(path, c)
		return
	}
	c.dev = dev
}

func sameDevice(a, b dylib.Device) bool {
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

// connect opens one dylib socket and runs the handshake.
func (br *Bridge) connect(path string, dev *dylib.Device) {
	ctx, cancel := context.WithTimeout(br.ctx, 5*time.Second)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
	if err != nil {
		br.log.Debug("backend: dylib socket", "socket", path, "err", err)
		return
	}
	var ids []xpc.UUID
	if dev != nil {
		ids = append(ids, dev.UUID)
	}
	c, err := dylib.NewClient(ctx, nc, dylib.ClientConfig{Builds: br.cfg.Builds, AcceptUnknownBuilds: br.cfg.AcceptUnknownBuilds,
		Allow: mercury.AllowList(), Action: br.answer, Deadline: br.cfg.Deadline, Logger: br.b.log}, ids)
	if err != nil {
		if errors.Is(err, dylib.ErrUnknownBuild) {
			br.log.Warn("backend: dylib in an unknown CoreDeviceService build refused (BridgeConfig.Builds)", "socket", path, "err", err)
		} else {
			br.log.Info("backend: dylib handshake failed", "socket", path, "err", err)
		}
		return
	}
	h := c.Hello()
	if !containsBuild(br.cfg.Builds, h.Build) {
		br.log.Warn("backend: dylib in an unverified CoreDeviceService build", "socket", path, "build", h.Build.String())
	}
	br.log.Info("backend: dylib connected", "socket", path, "pid", h.PID, "arch", h.Arch, "dylib", h.DylibVersion)
	bc := &bridgeClient{c: c}
	br.mu.Lock()
	br.clients[path] = bc
	br.mu.Unlock()
	if dev != nil {
		d := *dev
		bc.dev = &d // HELLO_ACK listed it; ATTACH carries its data
		if err := c.Attach(d); err != nil {
			br.drop(path, bc)
		}
	}
}

func containsBuild(list []dylib.Build, b dylib.Build) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}

// answer is the dylib.ClientConfig.Action: mercury decides from the
// current facts; every passthrough is logged with its reason.
func (br *Bridge) answer(ctx context.Context, req *xpc.Dict) dylib.ActionResponse {
	if br.testHookAnswer != nil {
		br.testHookAnswer()
	}
	f := br.Facts()
	if f != nil {
		g := *f // facts are replaced, never changed in place
		f = &g
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
