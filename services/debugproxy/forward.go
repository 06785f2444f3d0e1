package debugproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/utun"
)

// openTimeout bounds opening the device's debugproxy for one debugger.
const openTimeout = 15 * time.Second

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	// Opener reaches the device: an RSD through a kernel tunnel, a
	// userspace stack or the backend (reach.RSD), or usbmuxd lockdown for
	// the pre-iOS 17 proxy (reach.Lockdown).
	Opener reach.Opener
	// Prepare, if set, runs on each new connection to the device before
	// the debugger's bytes are relayed (Attach, to hand lldb a stopped
	// process); an error drops the debugger's connection.
	Prepare func(ctx context.Context, device net.Conn) error
	// Logger receives the forwarder's logs; nil discards.
	Logger *slog.Logger
}

// Forwarder exposes the device's debugserver on a local listener
// (debugproxy.md §4): every connection accepted opens a new raw connection
// to the device's debugproxy and the two are relayed both ways.
type Forwarder struct {
	ln  net.Listener
	cfg ForwarderConfig
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	err   error // the last connection's failure, for Err
}

// NewForwarder starts accepting on ln, which it owns.
func NewForwarder(ln net.Listener, cfg ForwarderConfig) *Forwarder {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{ln: ln, cfg: cfg, log: log, conns: map[net.Conn]struct{}{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wg.Go(f.accept)
	return f
}

// Addr is the local address debuggers connect to.
func (f *Forwarder) Addr() net.Addr { return f.ln.Addr() }

// Err is the failure of the last connection that could not reach the
// device, if any.
func (f *Forwarder) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Close stops accepting, ends every relay and waits for them.
func (f *Forwarder) Close() error {
	f.cancel()
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx.Err() != nil {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *Forwarder) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if f.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				f.log.Warn("debugproxy: accept failed", "listen", f.ln.Addr().String(), "err", err)
			}
			return
		}
		if !f.track(c) {
			return
		}
		f.wg.Go(func() { f.serve(c) })
	}
}

func (f *Forwarder) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	f.log.Error("debugproxy: a debugger's connection could not reach the device", "err", err)
}

func (f *Forwarder) serve(c net.Conn) {
	defer f.untrack(c)
	ctx, cancel := context.WithTimeout(f.ctx, openTimeout)
	d, err := f.cfg.Opener.Open(ctx, reach.DebugProxy)
	if err == nil && f.cfg.Prepare != nil {
		if err = f.cfg.Prepare(ctx, d); err != nil {
			d.Close()
			err = fmt.Errorf("debugproxy: %s: preparing the debugserver: %w", f.cfg.Opener.UDID(), err)
		}
	}
	cancel()
	if err != nil {
		f.fail(err)
		return
	}
	if !f.track(d) {
		return
	}
	defer f.untrack(d)
	f.log.Debug("debugproxy: relaying", "client", c.RemoteAddr().String(), "device", d.RemoteAddr().String())
	if err := utun.Relay(c, d); err != nil {
		f.log.Debug("debugproxy: relay ended", "err", err)
	}
}

// Attach makes a fresh debugserver connection attach to pid before a
// debugger takes it over (ForwarderConfig.Prepare): lldb's "process
// connect" then finds a stopped process, which it needs when its commands
// run synchronously (-o, -s, batch mode; debugproxy.md §4). The exchange
// stays in ack mode, as the debugger expects to find it.
func Attach(pid int64) func(ctx context.Context, device net.Conn) error {
	return func(ctx context.Context, device net.Conn) error {
		if dl, ok := ctx.Deadline(); ok {
			device.SetDeadline(dl)
			defer device.SetDeadline(time.Time{})
		}
		c := NewConn(device)
		reply, err := c.Call(fmt.Sprintf("vAttach;%x", pid))
		if err != nil {
			return err
		}
		if c.r.Buffered() > 0 {
			return errors.New("the debugserver sent more than the stop reply")
		}
		if len(reply) == 0 || (reply[0] != 'T' && reply[0] != 'S') {
			return fmt.Errorf("attach to pid %d refused (%q): is it running?", pid, reply)
		}
		return nil
	}
}
