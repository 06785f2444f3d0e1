package syslog

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"time"
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

// jsonEntry is a line in JSON output.
type jsonEntry struct {
	Time      string `json:"time,omitempty"`
	Device    string `json:"device,omitempty"`
	Process   string `json:"process,omitempty"`
	Image     string `json:"image,omitempty"`
	PID       *int   `json:"pid,omitempty"`
	Level     Level  `json:"level,omitempty"`
	Message   string `json:"message,omitempty"`
	Line      string `json:"line,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// Print writes one line.
func (p *Printer) Print(e *Entry) error {
	b := p.buf[:0]
	switch {
	case p.format == JSON:
		j := jsonEntry{Truncated: e.Truncated}
		if e.Parsed {
			pid := e.PID
			j.Time = WithYear(e.Time, p.now()).Format("2006-01-02T15:04:05")
			j.Device, j.Process, j.Image, j.PID, j.Level, j.Message = e.DeviceName, e.Process, e.Image, &pid, e.Level, e.Message
		} else {
			j.Line = e.Raw
		}
		enc, err := json.Marshal(j)
		if err != nil {
			return err
		}
		b = append(b, enc...)
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
	err := c.Run(ctx, func(e *Entry) error {
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
	})
	if ferr := p.Flush(); err == nil {
		err = ferr
	}
	return n, err
}
