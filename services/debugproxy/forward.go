package debugproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/utun"
)

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
// to the device's debugproxy through the Opener, and utun's forwarder
// relays the two both ways.
type Forwarder struct {
	*utun.Forwarder
	cfg ForwarderConfig
	log *slog.Logger

	mu  sync.Mutex
	err error // the last connection's failure, for Err
}

// NewForwarder starts accepting on ln, which it owns.
func NewForwarder(ln net.Listener, cfg ForwarderConfig) *Forwarder {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{cfg: cfg, log: log}
	f.Forwarder = utun.NewOpenForwarder(ln, f.open, log)
	return f
}

// Err is the failure of the last connection that could not reach the
// device, if any.
func (f *Forwarder) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// open is the device side of one debugger's connection.
func (f *Forwarder) open(ctx context.Context) (net.Conn, error) {
	d, err := f.cfg.Opener.Open(ctx, reach.DebugProxy)
	if err == nil && f.cfg.Prepare != nil {
		if err = f.cfg.Prepare(ctx, d); err != nil {
			d.Close()
			err = fmt.Errorf("debugproxy: %s: preparing the debugserver: %w", f.cfg.Opener.UDID(), err)
		}
	}
	if err != nil {
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
		f.log.Error("debugproxy: a debugger's connection could not reach the device", "err", err)
		return nil, err
	}
	return d, nil
}

// attachPatience bounds how long Attach asks again after a refusal.
const attachPatience = 1500 * time.Millisecond

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
		// A refusal is asked again for a moment: the debugger that left just
		// before (lldb reconnecting) may still be letting go of the process,
		// and one process has one tracer at a time.
		b := retry.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: -1}
		until := time.Now().Add(attachPatience)
		for {
			reply, err := c.Call(fmt.Sprintf("vAttach;%x", pid))
			if err != nil {
				return err
			}
			if c.r.Buffered() > 0 {
				return errors.New("the debugserver sent more than the stop reply")
			}
			if len(reply) > 0 && (reply[0] == 'T' || reply[0] == 'S') {
				return nil
			}
			wait := b.Next()
			if time.Now().Add(wait).After(until) {
				return fmt.Errorf("attach to pid %d refused (%q) for %v: is it running, and is no other debugger attached?", pid, reply, attachPatience)
			}
			if err := retry.Sleep(ctx, wait); err != nil {
				return err
			}
		}
	}
}
