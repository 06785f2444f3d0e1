package discovery

import (
	"context"
	"log/slog"
	"sync"
	"time"
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
			b := Backoff{Min: 2 * time.Second, Max: time.Minute}
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
				if sleep(ctx, wait) != nil {
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
