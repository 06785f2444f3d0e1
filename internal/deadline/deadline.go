// Package deadline binds a context to blocking calls on a connection, the
// way crypto/tls's HandshakeContext does: the context's deadline becomes
// the connection's, and its cancellation moves that deadline into the past
// so a blocked Read or Write returns at once. It is the one place iosmux
// does this; protocol packages call Do around a call, or Interrupt when
// they set deadlines of their own (per-chunk idle limits, a request
// timeout).
package deadline

import (
	"context"
	"errors"
	"os"
	"time"
)

// Setter is what a deadline is set on: net.Conn's SetDeadline,
// SetReadDeadline or SetWriteDeadline, or an os.File's.
type Setter func(time.Time) error

// past is the deadline that interrupts: any time already gone.
var past = time.Unix(1, 0)

// Conn is a connection with deadlines (net.Conn has them).
type Conn interface {
	SetDeadline(time.Time) error
}

// Do runs f, a blocking call on c, with ctx's deadline set on c and ctx's
// cancellation interrupting it; c's deadline is cleared after. When ctx
// ends during f its cause is returned (joined with f's error) rather than
// a bare i/o timeout; a ctx already done returns its cause without calling
// f.
func Do(ctx context.Context, c Conn, f func() error) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	dl, _ := ctx.Deadline()
	if err := c.SetDeadline(dl); err != nil {
		return err
	}
	stop := Interrupt(ctx, c.SetDeadline)
	err := f()
	if !stop() {
		err = errors.Join(context.Cause(ctx), err)
	} else if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
		err = errors.Join(context.DeadlineExceeded, err)
	}
	_ = c.SetDeadline(time.Time{})
	return err
}

// Interrupt makes ctx's end interrupt calls blocked on a connection by
// setting a deadline in the past through set, for callers that manage the
// connection's deadlines themselves. stop reports false once the
// interruption has happened or is about to (context.AfterFunc's stop):
// the connection is then unusable whatever the call returned.
func Interrupt(ctx context.Context, set Setter) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = set(past) })
}

// Earliest is the earlier of now+d and ctx's deadline: a request timeout
// that a caller's shorter deadline overrides.
func Earliest(ctx context.Context, d time.Duration) time.Time {
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		return dl
	}
	return t
}
