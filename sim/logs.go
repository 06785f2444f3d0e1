package sim

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iosmux/iosmux/services/ostrace"
	"github.com/iosmux/iosmux/services/syslog"
)

// The simulated device's log: one stream of lines that syslog_relay sends
// as text and os_trace_relay as records (syslog.md §4, ostrace.md §4). The
// device writes a line for each of its own events (boot, pairing, a tunnel
// up, an app launched or exited, a crash report saved) and, at a rate the
// test or user sets, lines of background chatter, so load tests have a
// stream to keep up with.

// LogLevel is a line's os_log level.
type LogLevel uint8

// os_log levels (the byte os_trace_relay sends).
const (
	LogDefault LogLevel = LogLevel(ostrace.LevelDefault)
	LogInfo    LogLevel = LogLevel(ostrace.LevelInfo)
	LogDebug   LogLevel = LogLevel(ostrace.LevelDebug)
	LogError   LogLevel = LogLevel(ostrace.LevelError)
	LogFault   LogLevel = LogLevel(ostrace.LevelFault)
)

// syslogLevel is the word syslog_relay shows for an os_log level.
func (l LogLevel) syslogLevel() syslog.Level {
	switch l {
	case LogInfo:
		return syslog.LevelInfo
	case LogDebug:
		return syslog.LevelDebug
	case LogError:
		return syslog.LevelError
	case LogFault:
		return syslog.LevelFault
	}
	return syslog.LevelNotice
}

// LogLine is one message of the device's log.
type LogLine struct {
	Seq       uint64 // 1, 2, … per device, in the order written
	Time      time.Time
	PID       int
	Path      string // the process's executable path
	Image     string // the image that logged, a path; "" is the executable itself
	Subsystem string
	Category  string
	Level     LogLevel
	Message   string
}

// Process is the process name, the executable's last path element.
func (l *LogLine) Process() string { return path.Base(l.Path) }

// Syslog is the line as syslog_relay sends it (before vis escaping), for
// a device whose host name is host.
func (l *LogLine) Syslog(host string) syslog.Entry {
	e := syslog.Entry{Time: l.Time, DeviceName: host, Process: l.Process(), PID: l.PID,
		Level: l.Level.syslogLevel(), Message: l.Message, Parsed: true}
	if l.Image != "" {
		e.Image = path.Base(l.Image)
	}
	return e
}

// Record is the line as os_trace_relay sends it.
func (l *LogLine) Record() ostrace.Record {
	img := l.Image
	if img == "" {
		img = l.Path
	}
	return ostrace.Record{PID: uint32(l.PID), UniquePID: uint64(l.PID), Time: l.Time.UTC().Truncate(time.Microsecond),
		Level: ostrace.Level(l.Level), MachTime: l.Seq * 41_666, ThreadID: uint64(0x1000 + l.PID),
		Filename: l.Path, ImageName: img, Message: l.Message, Subsystem: l.Subsystem, Category: l.Category}
}

// HostName is the device's host name as syslog lines show it: its name
// with every run of characters other than letters and digits made one
// dash ("iPhone (sim 1)" → "iPhone-sim-1"; SIM: Apple's rule is not
// published, and a name with spaces would break hosts' parsers).
func HostName(deviceName string) string {
	var b strings.Builder
	dash := false
	for _, r := range deviceName {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimSuffix(b.String(), "-")
	if s == "" {
		return "iPhone"
	}
	return s
}

// logQueue bounds the lines waiting for one connection; a host further
// behind loses lines, counted in LogStats.Dropped (SIM).
const logQueue = 1 << 16

// logKeep is how many recent lines the device keeps for CreateArchive.
const logKeep = 4096

// Logs is a device's log. Safe for concurrent use.
type Logs struct {
	host string
	now  func() time.Time

	mu      sync.Mutex
	seq     uint64
	subs    map[*logSub]struct{}
	recs    map[*LogRecorder]struct{}
	kept    []LogLine // ring of the last logKeep lines
	keptAt  int
	changed chan struct{} // closed and replaced when subscribers come or go
	dropped uint64        // by connections already gone
	counts  map[string]uint64

	rate    atomic.Uint64 // math.Float64bits of lines per second of chatter
	rateSet chan struct{} // wakes the chatter when the rate changes
}

func newLogs(host string, now func() time.Time) *Logs {
	return &Logs{host: host, now: now, subs: map[*logSub]struct{}{}, recs: map[*LogRecorder]struct{}{},
		counts: map[string]uint64{}, changed: make(chan struct{}), rateSet: make(chan struct{}, 1)}
}

// HostName is the name syslog lines carry for this device.
func (l *Logs) HostName() string { return l.host }

// Write adds lines to the log: each gets the next sequence number and, if
// it has none, the current time. Every connection streaming the log gets
// them.
func (l *Logs) Write(lines ...LogLine) {
	if len(lines) == 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range lines {
		l.seq++
		lines[i].Seq = l.seq
		if lines[i].Time.IsZero() {
			lines[i].Time = now
		}
		l.counts[lines[i].Process()]++
		if len(l.kept) < logKeep {
			l.kept = append(l.kept, lines[i])
		} else {
			l.kept[l.keptAt] = lines[i]
			l.keptAt = (l.keptAt + 1) % logKeep
		}
	}
	for s := range l.subs {
		s.push(lines)
	}
	for r := range l.recs {
		r.lines = append(r.lines, lines...)
	}
}

// Log writes one line from the process pid of the device's process table
// (or, when pid is not in it, from a process at path p).
func (l *Logs) Log(pid int, p string, level LogLevel, msg string) {
	l.Write(LogLine{PID: pid, Path: p, Level: level, Message: msg})
}

// Kept returns the most recent lines, oldest first (up to 4096).
func (l *Logs) Kept() []LogLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LogLine, 0, len(l.kept))
	out = append(out, l.kept[l.keptAt:]...)
	return append(out, l.kept[:l.keptAt]...)
}

// Count is how many lines the process named process has written.
func (l *Logs) Count(process string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[process]
}

// LogStats counts what the log has done.
type LogStats struct {
	Written     uint64 `json:"written"`     // lines written since the device started
	Subscribers int    `json:"subscribers"` // connections streaming now
	// Dropped counts lines connections lost for not reading fast enough.
	Dropped uint64 `json:"dropped"`
}

// Stats returns the counters.
func (l *Logs) Stats() LogStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := LogStats{Written: l.seq, Subscribers: len(l.subs), Dropped: l.dropped}
	for s := range l.subs {
		st.Dropped += s.dropped.Load()
	}
	return st
}

// WaitSubscribers waits until at least n connections stream the log: a
// host's stream has no first message to wait for, so a test waits here
// before writing the lines it expects the host to print.
func (l *Logs) WaitSubscribers(ctx context.Context, n int) error {
	for {
		l.mu.Lock()
		have, ch := len(l.subs), l.changed
		l.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("sim: %d log subscribers, waiting for %d: %w", have, n, ctx.Err())
		}
	}
}

// LogRecorder collects every line written while it records.
type LogRecorder struct {
	l     *Logs
	lines []LogLine
}

// Record starts collecting lines.
func (l *Logs) Record() *LogRecorder {
	r := &LogRecorder{l: l}
	l.mu.Lock()
	l.recs[r] = struct{}{}
	l.mu.Unlock()
	return r
}

// Stop ends the recording and returns the lines written during it.
func (r *LogRecorder) Stop() []LogLine {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	delete(r.l.recs, r)
	return r.lines
}

// logSub is one connection's queue.
type logSub struct {
	mu      sync.Mutex
	queue   []LogLine
	wake    chan struct{}
	dropped atomic.Uint64
}

func (s *logSub) push(lines []LogLine) {
	s.mu.Lock()
	room := logQueue - len(s.queue)
	n := min(room, len(lines))
	s.queue = append(s.queue, lines[:n]...)
	s.mu.Unlock()
	if n < len(lines) {
		s.dropped.Add(uint64(len(lines) - n))
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take waits for lines and returns all that are queued.
func (s *logSub) take(ctx context.Context, spare []LogLine) ([]LogLine, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			out := s.queue
			s.queue = spare[:0]
			s.mu.Unlock()
			return out, nil
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

func (l *Logs) subscribe() *logSub {
	s := &logSub{wake: make(chan struct{}, 1)}
	l.mu.Lock()
	l.subs[s] = struct{}{}
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	return s
}

func (l *Logs) unsubscribe(s *logSub) {
	l.mu.Lock()
	delete(l.subs, s)
	l.dropped += s.dropped.Load()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// feed turns one connection's queued lines into what its service sends:
// syslog entries or os_trace records.
type feed[T any] struct {
	s     *logSub
	conv  func(*LogLine) T
	spare []LogLine
	out   []T
}

func (f *feed[T]) Next(ctx context.Context) ([]T, error) {
	lines, err := f.s.take(ctx, f.spare)
	if err != nil {
		return nil, err
	}
	f.out = f.out[:0]
	for i := range lines {
		f.out = append(f.out, f.conv(&lines[i]))
	}
	f.spare = lines
	return f.out, nil
}
