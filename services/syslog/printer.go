package syslog

import (
	"bufio"
	"context"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// Format is how a Printer writes lines.
type Format int

const (
	// Plain writes each line as the device sent it, vis-decoded, with
	// control bytes escaped again.
	Plain Format = iota
	// Color is Plain with ANSI colours on the time, process and level, for
	// a terminal.
	Color
	// JSON writes one JSON object per line (JSON Lines) with the parsed
	// fields; lines that do not parse carry only "line".
	JSON
)

// Printer writes lines to an output, buffered: call Flush when no more
// lines are waiting (Client.Buffered), so a burst costs one write and a
// lone line is not held back.
type Printer struct {
	w      *bufio.Writer
	format Format
	now    func() time.Time
	buf    []byte
}

// NewPrinter writes to w in format; now places lines in a year for JSON
// (nil means time.Now).
func NewPrinter(w io.Writer, format Format, now func() time.Time) *Printer {
	if now == nil {
		now = time.Now
	}
	return &Printer{w: bufio.NewWriterSize(w, 64<<10), format: format, now: now}
}

// Flush writes what is buffered.
func (p *Printer) Flush() error { return p.w.Flush() }

// ANSI colours.
const (
	ansiReset   = "\x1b[0m"
	ansiDim     = "\x1b[2m"
	ansiRed     = "\x1b[31m"
	ansiGreen   = "\x1b[32m"
	ansiYellow  = "\x1b[33m"
	ansiMagenta = "\x1b[35m"
	ansiCyan    = "\x1b[36m"
	ansiBoldRed = "\x1b[1;31m"
)

func levelColor(l Level) string {
	switch s := l.Severity(); {
	case s >= LevelCritical.Severity():
		return ansiBoldRed
	case s == LevelFault.Severity():
		return ansiMagenta
	case s == LevelError.Severity():
		return ansiRed
	case s == LevelWarning.Severity():
		return ansiYellow
	case s <= LevelInfo.Severity():
		return ansiDim
	}
	return ansiGreen
}

// appendJSON appends e as one JSON object: the parsed fields (time placed
// in a year), or "line" for a line that did not parse; "truncated" when it
// was cut. Written by hand: encoding/json's reflection was most of a
// line's cost.
func (p *Printer) appendJSON(b []byte, e *Entry) []byte {
	b = append(b, '{')
	if e.Parsed {
		b = append(b, `"time":"`...)
		b = WithYear(e.Time, p.now()).AppendFormat(b, "2006-01-02T15:04:05")
		b = append(b, `","device":`...)
		b = appendJSONString(b, e.DeviceName)
		b = append(b, `,"process":`...)
		b = appendJSONString(b, e.Process)
		if e.Image != "" {
			b = append(b, `,"image":`...)
			b = appendJSONString(b, e.Image)
		}
		b = append(b, `,"pid":`...)
		b = strconv.AppendInt(b, int64(e.PID), 10)
		b = append(b, `,"level":`...)
		b = appendJSONString(b, string(e.Level))
		b = append(b, `,"message":`...)
		b = appendJSONString(b, e.Message)
	} else {
		b = append(b, `"line":`...)
		b = appendJSONString(b, e.Raw)
	}
	if e.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control bytes escaped, bytes that are not UTF-8 replaced by U+FFFD (as
// encoding/json does).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Print writes one line.
func (p *Printer) Print(e *Entry) error {
	b := p.buf[:0]
	switch {
	case p.format == JSON:
		b = p.appendJSON(b, e)
	case p.format == Color && e.Parsed:
		b = append(b, ansiDim...)
		b = e.Time.AppendFormat(b, stampLayout)
		b = append(b, ' ')
		b = appendVisible(b, e.DeviceName)
		b = append(b, ansiReset+" "+ansiCyan...)
		b = appendVisible(b, e.Process)
		if e.Image != "" {
			b = append(b, ansiDim+"("...)
			b = appendVisible(b, e.Image)
			b = append(b, ")"+ansiReset+ansiCyan...)
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(e.PID), 10)
		b = append(b, "]"+ansiReset+" "...)
		c := levelColor(e.Level)
		b = append(b, c...)
		b = append(b, '<')
		b = appendVisible(b, string(e.Level))
		b = append(b, ">"+ansiReset+": "...)
		if s := e.Level.Severity(); s >= LevelError.Severity() {
			b = append(b, c...)
			b = appendVisible(b, e.Message)
			b = append(b, ansiReset...)
		} else {
			b = appendVisible(b, e.Message)
		}
	default:
		b = appendVisible(b, e.Raw)
	}
	if e.Truncated && p.format != JSON {
		b = append(b, " [truncated]"...)
	}
	b = append(b, '\n')
	p.buf = b
	_, err := p.w.Write(b)
	return err
}

// Copy streams c's lines that pass f to p until ctx ends, the stream ends
// or a write fails, flushing p whenever no more received lines wait (a
// burst is written at once, a lone line at once too). It returns how many
// lines it printed.
func Copy(ctx context.Context, c *Client, f *Filter, p *Printer) (int, error) {
	n := 0
	print := func(e *Entry) error {
		if f.Allow(e) {
			if err := p.Print(e); err != nil {
				return err
			}
			n++
		}
		if !c.Buffered() {
			return p.Flush()
		}
		return nil
	}
	var err error
	if p.format == Plain && f.Match == nil && len(f.Processes) == 0 && len(f.PIDs) == 0 && f.MinLevel == "" {
		// Nothing looks at the fields: print lines as they come.
		var e Entry
		err = c.lines(ctx, func(line string, trunc bool) error {
			e = Entry{Raw: line, Truncated: trunc}
			return print(&e)
		})
	} else {
		err = c.Run(ctx, print)
	}
	if ferr := p.Flush(); err == nil {
		err = ferr
	}
	return n, err
}
