package syslog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/iosmux/iosmux/internal/deadline"
)

// DefaultMaxLine bounds one line on the host side. Real lines are at most a
// few kilobytes (os_log truncates messages at 1 KiB of arguments); a longer
// one is cut there and marked Truncated rather than growing a buffer
// without limit.
const DefaultMaxLine = 64 << 10

// Client reads the stream of one connection to syslog_relay, positioned at
// the service's first byte (services/reach opens it by RSD name or lockdown
// name). The host sends nothing; the device never ends the stream, so the
// host stops by cancelling ctx or closing the client (syslog.md §1).
//
// A Client is for one goroutine; Close may be called from any.
type Client struct {
	conn net.Conn
	br   *bufio.Reader
	max  int
	raw  []byte // the line as received
	buf  []byte // the line decoded
	skip bool   // inside the rest of a truncated line
}

// NewClient wraps conn. maxLine bounds one line (0 means DefaultMaxLine).
func NewClient(conn net.Conn, maxLine int) *Client {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Client{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), max: maxLine}
}

// Close closes the connection; a Run in flight returns.
func (c *Client) Close() error { return c.conn.Close() }

// ErrClosed is returned by Run and Next when the device closed the stream,
// which a real device never does by itself (it rebooted, or the tunnel
// went away).
var ErrClosed = errors.New("syslog: the device closed the log stream")

// Run reads lines until ctx ends, fn returns an error, or the stream ends,
// and returns why (ctx's cause when it ended). fn gets each line parsed; e
// is reused for the next line, so fn must copy what it keeps. A line that
// does not parse is passed with Parsed false.
func (c *Client) Run(ctx context.Context, fn func(e *Entry) error) error {
	var e Entry
	return c.lines(ctx, func(line string, trunc bool) error {
		e, _ = ParseLine(line)
		e.Truncated = trunc
		return fn(&e)
	})
}

// lines is Run without the parsing, for output that needs none.
func (c *Client) lines(ctx context.Context, fn func(line string, truncated bool) error) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	stop := deadline.Interrupt(ctx, c.conn.SetReadDeadline)
	defer stop()
	for {
		line, trunc, err := c.readLine()
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return err
		}
		if err := fn(line, trunc); err != nil {
			return err
		}
	}
}

// Buffered reports whether lines already received wait to be read: a
// printer flushes its output when this is false, so bursts are written in
// one go and single lines appear at once.
func (c *Client) Buffered() bool { return c.br.Buffered() > 0 }

// Next reads one line; ctx bounds the wait.
func (c *Client) Next(ctx context.Context) (*Entry, error) {
	var line string
	var trunc bool
	err := deadline.Do(ctx, c.conn, func() error {
		var err error
		line, trunc, err = c.readLine()
		return err
	})
	if err != nil {
		return nil, err
	}
	e, _ := ParseLine(line)
	e.Truncated = trunc
	return &e, nil
}

// readLine returns the next line, vis-decoded, without its terminator.
// Lines end at a NUL; the newline before it is dropped (syslog.md §1:
// every line ends "\n\0"; go-ios splits on the NUL alone, as this does, so
// a line missing its newline is still a line).
func (c *Client) readLine() (line string, truncated bool, err error) {
	c.raw = c.raw[:0]
	for {
		chunk, err := c.br.ReadSlice(0)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				if len(c.raw) > 0 || len(chunk) > 0 {
					return "", false, fmt.Errorf("%w in the middle of a line", ErrClosed)
				}
				return "", false, ErrClosed
			}
			return "", false, fmt.Errorf("syslog: read: %w", err)
		}
		end := err == nil
		if end {
			chunk = bytes.TrimSuffix(chunk[:len(chunk)-1], []byte{'\n'})
		}
		if c.skip {
			c.skip = !end
			continue
		}
		if room := c.max - len(c.raw); len(chunk) > room {
			c.raw = append(c.raw, chunk[:room]...)
			c.skip = !end
			truncated = true
		} else {
			c.raw = append(c.raw, chunk...)
			if !end {
				continue
			}
		}
		c.buf = AppendUnvis(c.buf[:0], c.raw)
		return string(c.buf), truncated, nil
	}
}
