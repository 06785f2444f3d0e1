// Package dylibtest is a fake of the iosmux dylib inside CoreDeviceService,
// in Go, for tests: it listens where the dylib listens, checks the peer's
// uid, speaks the dylib's side of the protocol (dylib.Server) frame for
// frame, and decides each Mercury message the way the dylib's invoke hook
// does (inject/iosmux_gambit.m): only allow-listed actions on attached
// devices are sent to iosmux, and every failure lets CDS's own code run.
package dylibtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/iosmux/iosmux/dylib"

	"github.com/iosmux/iosmux/xpc"
)

// Config configures a Fake.
type Config struct {
	// Dir is where the socket is created (the dylib uses /tmp); Name
	// defaults to iosmux-cds.<pid>.sock.
	Dir, Name string
	// Hello is sent to iosmux; PID and UID default to this process's.
	Hello dylib.Hello
	// Server tunes the dylib side (wait per request).
	Server dylib.ServerConfig
	// UID is the uid a peer must have besides root; -1 means this
	// process's.
	UID int
}

// Fake is one fake dylib. It accepts one iosmux connection at a time, as
// the dylib does.
type Fake struct {
	cfg  Config
	path string
	ln   *net.UnixListener

	mu       sync.Mutex
	srv      *dylib.Server
	conns    chan *dylib.Server
	rejected int
	frames   []dylib.Frame

	wg sync.WaitGroup
}

// Listen creates the socket (mode 0600) and starts accepting.
func Listen(cfg Config) (*Fake, error) {
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("iosmux-cds.%d.sock", os.Getpid())
	}
	if cfg.Hello.PID == 0 {
		cfg.Hello.PID = int64(os.Getpid())
	}
	if cfg.Hello.UID == 0 {
		cfg.Hello.UID = int64(os.Getuid())
	}
	if cfg.Hello.Protocol == 0 {
		cfg.Hello.Protocol = dylib.Protocol
	}
	cfg.Server.Hello = cfg.Hello
	if cfg.UID == -1 || cfg.UID == 0 {
		cfg.UID = os.Getuid()
	}
	path := filepath.Join(cfg.Dir, cfg.Name)
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Net: "unix", Name: path})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	f := &Fake{cfg: cfg, path: path, ln: ln, conns: make(chan *dylib.Server, 16)}
	user := cfg.Server.OnFrame
	f.cfg.Server.OnFrame = func(fr dylib.Frame) {
		f.mu.Lock()
		f.frames = append(f.frames, fr)
		f.mu.Unlock()
		if user != nil {
			user(fr)
		}
	}
	f.wg.Go(f.accept)
	return f, nil
}

// Path is the socket's path.
func (f *Fake) Path() string { return f.path }

// Close stops listening, ends the connection and removes the socket.
func (f *Fake) Close() error {
	f.ln.Close()
	f.mu.Lock()
	s := f.srv
	f.mu.Unlock()
	if s != nil {
		s.Close()
	}
	f.wg.Wait()
	os.Remove(f.path)
	return nil
}

func (f *Fake) accept() {
	for {
		c, err := f.ln.AcceptUnix()
		if err != nil {
			return
		}
		uid, err := peerUID(c)
		if err != nil || (uid != 0 && uid != f.cfg.UID) {
			f.mu.Lock()
			f.rejected++
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.mu.Lock()
		busy := f.srv != nil
		f.mu.Unlock()
		if busy {
			c.Close() // one iosmux connection at a time
			continue
		}
		s, err := dylib.NewServer(context.Background(), c, f.cfg.Server)
		if err != nil {
			continue
		}
		f.mu.Lock()
		f.srv = s
		f.mu.Unlock()
		select {
		case f.conns <- s:
		default:
		}
		f.wg.Go(func() {
			<-s.Done()
			f.mu.Lock()
			if f.srv == s {
				f.srv = nil
			}
			f.mu.Unlock()
		})
	}
}

// WaitConnected waits for iosmux to complete the handshake.
func (f *Fake) WaitConnected(ctx context.Context) (*dylib.Server, error) {
	select {
	case s := <-f.conns:
		return s, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("dylibtest: no iosmux connection: %w", ctx.Err())
	}
}

// Server returns the current connection, or nil.
func (f *Fake) Server() *dylib.Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.srv
}

// Rejected counts connections refused for their peer uid.
func (f *Fake) Rejected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejected
}

// Frames returns every frame iosmux sent after the handshake, in order.
func (f *Fake) Frames() []dylib.Frame {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]dylib.Frame(nil), f.frames...)
}

// Outcome is what the hook did with one message.
type Outcome struct {
	// Handled: the hook sent Reply and returned true without calling CDS's
	// original code. Otherwise the original ran (passthrough).
	Handled   bool
	Reply     *xpc.Dict
	Followups []dylib.Followup
	// Why the message was passed through.
	Why string
}

// Invoke is the hook on CoreDeviceUtilities.invoke(anyOf:usingContentsOf:)
// applied to one message: the local fast path, then iosmux, then the reply
// (set key by key on a fresh reply dictionary, as on
// xpc_dictionary_create_reply).
func (f *Fake) Invoke(ctx context.Context, msg *xpc.Dict) Outcome {
	id, ok := msg.Get(keyActionIdentifier).(xpc.String)
	if !ok {
		return Outcome{Why: "not an action"}
	}
	s := f.Server()
	if s == nil {
		return Outcome{Why: "iosmux not connected"}
	}
	if !s.Allowed(string(id)) {
		return Outcome{Why: "not allow-listed"}
	}
	dev, ok := msg.Get(keyDeviceIdentifier).(xpc.String)
	if !ok {
		return Outcome{Why: "no device identifier"}
	}
	u, err := xpc.ParseUUID(string(dev))
	if err != nil || !s.Attached(u) {
		return Outcome{Why: "not an iosmux device"}
	}
	r, err := s.Request(ctx, msg)
	if err != nil {
		if !errors.Is(err, dylib.ErrPassthrough) {
			err = fmt.Errorf("%w: %v", dylib.ErrPassthrough, err)
		}
		return Outcome{Why: err.Error()}
	}
	if r.Disposition != dylib.DispositionReply {
		return Outcome{Why: "iosmux: passthrough"}
	}
	reply := xpc.NewDict()
	for k, v := range r.Reply.All() {
		reply.Set(k, v)
	}
	return Outcome{Handled: true, Reply: reply, Followups: r.Followups}
}

// The two Mercury envelope keys the hook reads for its fast path (the
// dylib knows no other CoreDevice schema).
const (
	keyActionIdentifier = "CoreDevice.actionIdentifier"
	keyDeviceIdentifier = "CoreDevice.deviceIdentifier"
)

// PairRequest is Xcode's Pair invocation for the device u, in the envelope
// of docs/protocols/coredevice-schema.md §1.1 (the fixture of its golden
// cases), for tests to send through Invoke.
func PairRequest(u xpc.UUID) *xpc.Dict {
	return xpc.NewDict(
		keyActionIdentifier, xpc.String("com.apple.coredevice.action.pair"),
		"CoreDevice.invocationIdentifier", xpc.String("0B2E8F2A-6C0D-4E3B-9A51-7E4C2D19A0F1"),
		keyDeviceIdentifier, xpc.String(strings.ToUpper(u.String())),
		"CoreDevice.coreDeviceVersion", xpc.NewDict("components", xpc.Array{xpc.Uint64(629), xpc.Uint64(3)},
			"originalComponentsCount", xpc.Int64(2), "stringValue", xpc.String("629.3")),
		"CoreDevice.input", xpc.NewDict(),
	)
}
