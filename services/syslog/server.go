package syslog

import (
	"context"
	"net"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/services/reach"
)

// AppendLine appends e as the device sends it: the line vis-encoded, then
// "\n\0" (syslog.md §1).
func AppendLine(b []byte, e *Entry) []byte {
	var tmp [512]byte
	b = AppendVis(b, e.AppendText(tmp[:0]))
	return append(b, '\n', 0)
}

// Feed is where the device role gets its lines: the simulated device's log
// for one connection.
type Feed interface {
	// Next blocks until there are lines to send and returns them; it
	// returns an error when ctx ends or the feed is over, which ends the
	// stream.
	Next(ctx context.Context) ([]Entry, error)
}

// WriteTimeout bounds one write of the device role: a host that stops
// reading for this long is dropped, as it would otherwise hold the feed
// (and, in the simulator, its backlog) for ever.
const WriteTimeout = 30 * time.Second

// Serve is the device role of syslog_relay on conn, positioned after
// RSDCheckin or StartService: it writes every line feed gives, a batch per
// write, until the host closes the connection, a write fails, or ctx ends.
// It reads nothing the host sends (hosts send nothing) but watches for the
// host closing, so a quiet feed does not keep a dead connection.
func Serve(ctx context.Context, conn net.Conn, feed Feed) error {
	ctx, stop := reach.WatchHangup(ctx, conn)
	defer stop()
	// A write blocked on a host that stopped reading ends with ctx too.
	stopWrites := deadline.Interrupt(ctx, conn.SetWriteDeadline)
	defer stopWrites()
	var buf []byte
	for {
		lines, err := feed.Next(ctx)
		if err != nil {
			return err
		}
		buf = buf[:0]
		for i := range lines {
			buf = AppendLine(buf, &lines[i])
		}
		if len(buf) == 0 {
			continue
		}
		_ = conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if _, err := conn.Write(buf); err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return err
		}
		if cap(buf) > 1<<20 {
			buf = nil // one huge burst does not pin its buffer
		}
	}
}
