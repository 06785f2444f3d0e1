package sim

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Background chatter: lines from the system daemons at a set rate, so that
// a host can be loaded with a realistic stream (20 000 lines a second is
// the figure the load test asks for). The content is fixed by the line's
// sequence number, so two runs write the same stream.

// SetRate sets the chatter to linesPerSecond (0 stops it).
func (l *Logs) SetRate(linesPerSecond float64) {
	if linesPerSecond < 0 || math.IsNaN(linesPerSecond) || math.IsInf(linesPerSecond, 0) {
		linesPerSecond = 0
	}
	l.rate.Store(math.Float64bits(linesPerSecond))
	select {
	case l.rateSet <- struct{}{}:
	default:
	}
}

// Rate is the chatter's rate in lines per second.
func (l *Logs) Rate() float64 { return math.Float64frombits(l.rate.Load()) }

// chatterTick is how often the chatter writes its due lines.
const chatterTick = 5 * time.Millisecond

// runChatter writes chatter until ctx ends (the boot's lifetime). It keeps
// to the rate over time rather than per tick: a late tick writes what is
// due, up to a second's worth, so a stalled scheduler does not turn into an
// unbounded burst.
func (l *Logs) runChatter(ctx context.Context, procs *Processes) {
	var t *time.Ticker
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	var start time.Time
	var written uint64
	var n uint64 // the chatter's own line counter, for content
	for {
		rate := l.Rate()
		if rate == 0 {
			if t != nil {
				t.Stop()
				t = nil
			}
			select {
			case <-l.rateSet:
				continue
			case <-ctx.Done():
				return
			}
		}
		if t == nil {
			t = time.NewTicker(chatterTick)
			start, written = time.Now(), 0
		}
		select {
		case <-ctx.Done():
			return
		case <-l.rateSet:
			start, written = time.Now(), 0
			continue
		case now := <-t.C:
			due := uint64(rate * now.Sub(start).Seconds())
			if due <= written {
				continue
			}
			k := min(due-written, uint64(math.Max(rate, 1)))
			written = due
			batch := make([]LogLine, k)
			daemons := procs.List()
			for i := range batch {
				batch[i] = chatterLine(n, daemons)
				n++
			}
			l.Write(batch...)
		}
	}
}

// chatterSources are what each daemon says (SIM: made-up but plausible).
var chatterSources = []struct {
	name, subsystem, category, format string
}{
	{"SpringBoard", "com.apple.SpringBoard", "Layout", "updating layout for scene %d"},
	{"backboardd", "com.apple.backboard", "Events", "HID event %d dispatched"},
	{"locationd", "com.apple.locationd", "Position", "location update %d, accuracy 65 m"},
	{"mediaserverd", "com.apple.coreaudio", "Session", "audio session %d is now inactive"},
	{"logd", "com.apple.logd", "Stats", "statistics: %d messages persisted"},
	{"lockdownd", "com.apple.lockdownd", "Service", "heartbeat %d"},
	{"installd", "com.apple.installd", "Cache", "cache entry %d refreshed — café ☕"},
}

// chatterLine is line n of the chatter.
func chatterLine(n uint64, running []Process) LogLine {
	src := chatterSources[n%uint64(len(chatterSources))]
	line := LogLine{Path: "/usr/libexec/" + src.name, Subsystem: src.subsystem, Category: src.category,
		Message: fmt.Sprintf(src.format, n)}
	for _, p := range running {
		if p.Name == src.name {
			line.PID, line.Path = p.PID, p.Path
			break
		}
	}
	switch {
	case n%97 == 0:
		line.Level = LogError
	case n%11 == 0:
		line.Level = LogInfo
	default:
		line.Level = LogDefault
	}
	return line
}

// Flood writes n lines of chatter (the same n lines on every call) as fast
// as the connections streaming the log take them: unlike the rate-driven
// chatter it waits for room in their queues rather than let them drop
// lines, so a benchmark measures how fast a host reads. It returns early
// when ctx ends or nobody is streaming.
func (l *Logs) Flood(ctx context.Context, procs *Processes, n int) error {
	const batch = 4096
	daemons := procs.List()
	for sent := 0; sent < n; {
		k := min(batch, n-sent)
		for {
			l.mu.Lock()
			subs, full := len(l.subs), false
			for s := range l.subs {
				s.mu.Lock()
				full = full || len(s.queue)+k > logQueue
				s.mu.Unlock()
			}
			l.mu.Unlock()
			if subs == 0 {
				return fmt.Errorf("sim: flood: nobody streams the log")
			}
			if !full {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		lines := make([]LogLine, k)
		for i := range lines {
			lines[i] = chatterLine(uint64(sent+i), daemons)
		}
		l.Write(lines...)
		sent += k
	}
	return nil
}
