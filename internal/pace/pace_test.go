package pace

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestBucketPaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(1000, 1000) // bytes per second, one second of burst
		closed := make(chan struct{})
		start := time.Now()
		for range 5 {
			if !b.Take(1000, closed) {
				t.Fatal("Take reported the bucket closed")
			}
		}
		// The first second is burst; four more take four seconds.
		if d := time.Since(start); d != 4*time.Second {
			t.Fatalf("5000 bytes at 1000 B/s took %v, want 4s", d)
		}
		close(closed)
		if b.Take(1_000_000, closed) {
			t.Fatal("Take ignored close")
		}
	})
}
