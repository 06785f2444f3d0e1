package syslog

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Level is a line's level as written between < and > (syslog.md §2.1):
// "Notice", "Error" and so on. A device may send a word iosmux does not
// know; it is kept as sent.
type Level string

// The levels syslog_relay writes, from least to most severe. os_log's
// Default level appears as Notice.
const (
	LevelDebug     Level = "Debug"
	LevelInfo      Level = "Info"
	LevelNotice    Level = "Notice"
	LevelWarning   Level = "Warning"
	LevelError     Level = "Error"
	LevelFault     Level = "Fault"
	LevelCritical  Level = "Critical"
	LevelAlert     Level = "Alert"
	LevelEmergency Level = "Emergency"
)

var levels = []Level{LevelDebug, LevelInfo, LevelNotice, LevelWarning, LevelError, LevelFault, LevelCritical, LevelAlert, LevelEmergency}

// Severity orders levels for filtering: Debug is 1, Emergency 9. A level
// iosmux does not know counts as Notice.
func (l Level) Severity() int {
	for i, k := range levels {
		if k == l {
			return i + 1
		}
	}
	return LevelNotice.Severity()
}

// ParseLevel reads a level name in any case ("error", "Notice"); "default"
// is Notice, os_log's name for it.
func ParseLevel(s string) (Level, error) {
	if strings.EqualFold(s, "default") {
		return LevelNotice, nil
	}
	for _, l := range levels {
		if strings.EqualFold(s, string(l)) {
			return l, nil
		}
	}
	names := make([]string, len(levels))
	for i, l := range levels {
		names[i] = strings.ToLower(string(l))
	}
	return "", fmt.Errorf("syslog: unknown level %q (want one of %s)", s, strings.Join(names, ", "))
}

// Entry is one syslog_relay line (syslog.md §2.1):
//
//	Jan  2 03:04:05 iPhone Demo(libsystem_trace.dylib)[4321] <Notice>: hello
//
// Raw is the whole line, vis-decoded and without its terminator; for a line
// that parses, the other fields are pieces of it.
type Entry struct {
	Raw string
	// Time is the wall-clock time the line carries. The line has no year
	// and no zone, so the year is 0 and the zone UTC; WithYear places it.
	Time       time.Time
	DeviceName string
	Process    string
	Image      string // the library or framework that logged, when given
	PID        int
	Level      Level
	Message    string
	// Parsed is false for a line that does not have the format; only Raw
	// is set then.
	Parsed bool
	// Truncated marks a line longer than the reader's limit: Raw holds its
	// start, the rest was skipped.
	Truncated bool
}

// ErrFormat marks a line that is not in syslog_relay's format.
var ErrFormat = errors.New("syslog: line not in the syslog_relay format")

const stampLayout = "Jan _2 15:04:05"

// ParseLine parses one vis-decoded line without its terminator. On an
// error the Entry still holds Raw, so the line is never lost.
//
// The device name is the first word after the time (a host name, without
// spaces); the process is everything up to the "[pid]" that precedes
// " <Level>: ", so a process name may hold spaces; a trailing "(…)" on it
// is the image.
func ParseLine(line string) (Entry, error) {
	e := Entry{Raw: line}
	t, rest, ok := parseStamp(line)
	if !ok {
		return e, fmt.Errorf("%w: no timestamp at the start", ErrFormat)
	}
	sp := strings.IndexByte(rest, ' ')
	if sp <= 0 {
		return e, fmt.Errorf("%w: no device name", ErrFormat)
	}
	device, rest := rest[:sp], rest[sp+1:]
	// Find "[pid] <Level>: " — the first one whose pieces all check out.
	for off := 0; ; {
		i := strings.Index(rest[off:], "] <")
		if i < 0 {
			return e, fmt.Errorf("%w: no [pid] <Level>: after the process", ErrFormat)
		}
		i += off
		off = i + 1
		open := strings.LastIndexByte(rest[:i], '[')
		if open <= 0 {
			continue
		}
		pid, err := strconv.Atoi(rest[open+1 : i])
		if err != nil || pid < 0 || rest[open+1] == '+' {
			continue
		}
		after := rest[i+3:]
		gt := strings.Index(after, ">: ")
		if gt <= 0 || !isWord(after[:gt]) {
			continue
		}
		e.Time, e.DeviceName, e.PID, e.Level = t, device, pid, Level(after[:gt])
		e.Process, e.Image = splitImage(rest[:open])
		e.Message = after[gt+3:]
		e.Parsed = true
		return e, nil
	}
}

// parseStamp reads "Mon DD HH:MM:SS " with the day padded by a space or
// not. It is hand-written: time.Parse would be most of a line's cost.
func parseStamp(s string) (time.Time, string, bool) {
	if len(s) < 15 {
		return time.Time{}, "", false
	}
	month := 0
	for i, m := range months {
		if s[:3] == m {
			month = i + 1
			break
		}
	}
	if month == 0 || s[3] != ' ' {
		return time.Time{}, "", false
	}
	var day int
	rest := s[4:]
	switch {
	case rest[0] == ' ' && isDigit(rest[1]): // "Jan  2"
		day, rest = int(rest[1]-'0'), rest[2:]
	case isDigit(rest[0]) && isDigit(rest[1]): // "Jan 12"
		day, rest = int(rest[0]-'0')*10+int(rest[1]-'0'), rest[2:]
	case isDigit(rest[0]) && rest[1] == ' ': // "Jan 2"
		day, rest = int(rest[0]-'0'), rest[1:]
	default:
		return time.Time{}, "", false
	}
	// " HH:MM:SS "
	if len(rest) < 10 || rest[0] != ' ' || rest[3] != ':' || rest[6] != ':' || rest[9] != ' ' {
		return time.Time{}, "", false
	}
	var hms [3]int
	for i := range hms {
		a, b := rest[1+3*i], rest[2+3*i]
		if !isDigit(a) || !isDigit(b) {
			return time.Time{}, "", false
		}
		hms[i] = int(a-'0')*10 + int(b-'0')
	}
	if day < 1 || day > daysIn[month-1] || hms[0] > 23 || hms[1] > 59 || hms[2] > 59 {
		return time.Time{}, "", false
	}
	return time.Date(0, time.Month(month), day, hms[0], hms[1], hms[2], 0, time.UTC), rest[10:], true
}

var months = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// daysIn is the longest each month gets (the line has no year: Feb 29 is
// a valid day).
var daysIn = [12]int{31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return s != ""
}

// splitImage splits "Demo(libsystem_trace.dylib)" into process and image.
func splitImage(s string) (process, image string) {
	if strings.HasSuffix(s, ")") {
		if i := strings.LastIndexByte(s, '('); i > 0 {
			return s[:i], s[i+1 : len(s)-1]
		}
	}
	return s, ""
}

// WithYear returns t (an Entry's Time) in the year that puts it nearest
// before now, allowing a day of clock skew ahead: lines carry no year.
func WithYear(t, now time.Time) time.Time {
	y := now.Year()
	d := time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), now.Location())
	if d.After(now.Add(24 * time.Hour)) {
		d = d.AddDate(-1, 0, 0)
	}
	return d
}

// AppendText appends the line e stands for, not yet vis-encoded and
// without its terminator: the fields when e is Parsed, Raw otherwise.
func (e *Entry) AppendText(b []byte) []byte {
	if !e.Parsed {
		return append(b, e.Raw...)
	}
	b = e.Time.AppendFormat(b, stampLayout)
	b = append(b, ' ')
	b = append(b, e.DeviceName...)
	b = append(b, ' ')
	b = append(b, e.Process...)
	if e.Image != "" {
		b = append(b, '(')
		b = append(b, e.Image...)
		b = append(b, ')')
	}
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(e.PID), 10)
	b = append(b, "] <"...)
	b = append(b, e.Level...)
	b = append(b, ">: "...)
	return append(b, e.Message...)
}

// String is the line's text.
func (e *Entry) String() string { return string(e.AppendText(nil)) }
