// Package retry is the one back-off schedule iosmux waits by (tunneld's
// per-device retries, discovery's monitors and browsing, the usbmuxd
// watcher, the backend's Handshake reads) and a loop that retries with it.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Backoff yields growing waits between attempts: Min, then ×Factor per
// attempt up to Max, each spread by ±Jitter (a fraction) so that many
// devices failing together do not retry in lock-step. The zero value is
// usable: 500 ms doubling to 30 s with ±20 % jitter (a negative Jitter
// means none). go-ios's per-device
// back-off (30 s doubling to 300 s) is Backoff{Min: 30*time.Second,
// Max: 300*time.Second}.
//
// A Backoff is not safe for concurrent use; keep one per device or source.
type Backoff struct {
	Min, Max time.Duration
	Factor   float64
	Jitter   float64
	// Rand returns a float in [0, 1); nil uses math/rand/v2.
	Rand func() float64

	attempt int
}

func (b *Backoff) defaults() (lo, hi time.Duration, factor, jitter float64) {
	lo, hi, factor, jitter = b.Min, b.Max, b.Factor, b.Jitter
	if lo <= 0 {
		lo = 500 * time.Millisecond
	}
	if hi < lo {
		hi = max(30*time.Second, lo)
	}
	if factor < 1 {
		factor = 2
	}
	switch {
	case jitter == 0:
		jitter = 0.2
	case jitter < 0:
		jitter = 0 // explicitly none
	case jitter > 0.9:
		jitter = 0.9
	}
	return
}

// Next returns the wait before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi, factor, jitter := b.defaults()
	d := float64(lo)
	for i := 0; i < b.attempt && d < float64(hi); i++ {
		d *= factor
	}
	d = min(d, float64(hi))
	b.attempt++
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	// Uniform in [d·(1−j), d·(1+j)).
	d *= 1 - jitter + 2*jitter*r()
	return time.Duration(d)
}

// Reset starts over at Min (after a success, or when the device went away
// and came back).
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempts is the number of waits handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// permanent marks an error Do must not retry.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that Do gives up on it at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Do calls f until it succeeds, returns a Permanent error, or ctx ends,
// sleeping b.Next() between attempts. It returns f's last error (unwrapped
// from Permanent) or, when ctx ended while waiting, ctx's error joined with
// f's last error.
func Do(ctx context.Context, b *Backoff, f func(context.Context) error) error {
	for {
		err := f(ctx)
		if err == nil {
			b.Reset()
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		if cerr := Sleep(ctx, b.Next()); cerr != nil {
			return fmt.Errorf("%w (last error: %w)", cerr, err)
		}
	}
}

// Sleep waits d, or less when ctx ends first (then its error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
