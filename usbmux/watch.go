package usbmux

import (
	"context"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/retry"
)

// WatchConfig tunes a Watcher's reconnection.
type WatchConfig struct {
	// MinBackoff is the wait before the first reconnection attempt after
	// usbmuxd is lost; it doubles per failed attempt up to MaxBackoff and
	// resets once Listen succeeds. Zero values mean 500 ms and 30 s (pmd3
	// waits a fixed 2 s; go-ios's device back-off tops out at minutes).
	MinBackoff, MaxBackoff time.Duration
}

// Watcher keeps a Listen stream open across usbmuxd restarts: when the
// daemon goes away it reports Disconnected once, retries with exponential
// back-off, and reports Connected when a new stream is up. usbmuxd then
// re-announces every present device as Attached, so a consumer that forgets
// its devices on Disconnected stays correct.
type Watcher struct {
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Watch starts a Watcher that runs until ctx ends or Close is called. Its
// single goroutine blocks while the consumer is not reading Events.
func (c *Client) Watch(ctx context.Context, cfg WatchConfig) *Watcher {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{events: make(chan Event), cancel: cancel, done: make(chan struct{})}
	go w.run(ctx, c, cfg)
	return w
}

// Events delivers the stream. It is closed when the Watcher stops.
func (w *Watcher) Events() <-chan Event { return w.events }

// Close stops the Watcher and returns once its goroutine has exited. It is
// idempotent and safe to call concurrently.
func (w *Watcher) Close() error {
	w.once.Do(w.cancel)
	<-w.done
	return nil
}

func (w *Watcher) run(ctx context.Context, c *Client, cfg WatchConfig) {
	defer close(w.done)
	defer close(w.events)
	backoff := retry.Backoff{Min: cfg.MinBackoff, Max: cfg.MaxBackoff, Jitter: -1}
	lost := false // Disconnected already reported for this outage
	for {
		l, err := c.Listen(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !lost && !w.emit(ctx, Event{Kind: Disconnected, Err: err}) {
				return
			}
			lost = true
			if retry.Sleep(ctx, backoff.Next()) != nil {
				return
			}
			continue
		}
		lost = false
		backoff.Reset()
		if !w.emit(ctx, Event{Kind: Connected}) {
			l.Close()
			return
		}
		err = w.pump(ctx, l)
		l.Close()
		if ctx.Err() != nil {
			return
		}
		if !w.emit(ctx, Event{Kind: Disconnected, Err: err}) {
			return
		}
		lost = true
		// A stream that ended is retried after the first wait; only
		// failed Listen calls make the waits grow.
		if retry.Sleep(ctx, backoff.Next()) != nil {
			return
		}
		backoff.Reset()
	}
}

// pump forwards events until the stream fails or ctx ends.
func (w *Watcher) pump(ctx context.Context, l *Listener) error {
	for {
		ev, err := l.Next(ctx)
		if err != nil {
			return err
		}
		if !w.emit(ctx, ev) {
			return ctx.Err()
		}
	}
}

func (w *Watcher) emit(ctx context.Context, ev Event) bool {
	select {
	case w.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
