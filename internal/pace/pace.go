// Package pace is the one token bucket iosmux paces bytes with: the
// simulated device's link rate (sim) and its tunnel forwarder's rate limit
// (tunnel's device faults).
package pace

import (
	"sync"
	"time"
)

// Bucket is a token bucket of bytes: rate per second, up to burst banked.
// Take charges n bytes and sleeps off any debt, so a caller moving more
// than burst at once is paced too (golang.org/x/time/rate refuses such a
// request instead). It is safe for concurrent use.
type Bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// New returns a full bucket of rate bytes per second holding at most
// burst bytes.
func New(rate int64, burst float64) *Bucket {
	return &Bucket{rate: float64(rate), burst: burst, tokens: burst, last: time.Now()}
}

// Take charges n bytes, sleeping off any debt; false if done closed first.
func (b *Bucket) Take(n int, done <-chan struct{}) bool {
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*b.rate, b.burst)
	b.last = now
	b.tokens -= float64(n)
	debt := -b.tokens
	b.mu.Unlock()
	if debt <= 0 {
		return true
	}
	t := time.NewTimer(time.Duration(debt / b.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
