package discovery

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/retry"
)

// Run runs every monitor until ctx ends and hands their events to emit, one
// call at a time (emit needs no locking; it must not block for long). A
// monitor that fails is restarted after a back-off (pymobiledevice3 waits
// 2 s before reconnecting to usbmuxd; ours starts at 2 s and grows), which
// starts over once a run lasted a minute. Run returns ctx's error after
// every monitor has returned.
func Run(ctx context.Context, log *slog.Logger, emit func(Event), monitors ...Monitor) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var mu sync.Mutex
	serial := func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		emit(e)
	}
	var wg sync.WaitGroup
	for _, m := range monitors {
		wg.Go(func() {
			b := retry.Backoff{Min: 2 * time.Second, Max: time.Minute}
			for {
				start := time.Now()
				err := m.Run(ctx, serial)
				if ctx.Err() != nil {
					return
				}
				if time.Since(start) > time.Minute {
					b.Reset()
				}
				wait := b.Next()
				log.Warn("discovery: monitor failed, restarting", "monitor", monitorName(m), "err", err, "in", wait)
				if retry.Sleep(ctx, wait) != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

func monitorName(m Monitor) string {
	switch m := m.(type) {
	case *UsbmuxMonitor:
		return "usbmux"
	case *NCMMonitor:
		return "usb-ncm"
	case *BrowseMonitor:
		return m.Service
	}
	return "custom"
}

// First runs mon until it reports a device with an address, then for
// settle more (the same device may show on other links), or until ctx
// ends, and returns the Attached sightings it saw: a one-shot search for
// a command that needs one device now.
func First(ctx context.Context, mon Monitor, settle time.Duration) []Event {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		found []Event
		first = make(chan struct{})
		once  sync.Once
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		mon.Run(ctx, func(ev Event) {
			if ev.Kind != Attached || !ev.Addr.IsValid() {
				return
			}
			mu.Lock()
			found = append(found, ev)
			mu.Unlock()
			once.Do(func() { close(first) })
		})
	}()
	select {
	case <-first:
		t := time.NewTimer(settle)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	case <-ctx.Done():
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return found
}
