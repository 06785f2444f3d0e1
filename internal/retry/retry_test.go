package retry

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestBackoffSchedule runs Do under a fake clock: the waits grow by the
// factor up to Max, each within the jitter band, and a success resets.
func TestBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rnd := []float64{0, 0.999999, 0.5, 0.25, 0.75, 0, 0.5}
		i := 0
		b := &Backoff{Min: time.Second, Max: 8 * time.Second, Jitter: 0.5, Rand: func() float64 { r := rnd[i%len(rnd)]; i++; return r }}
		var at []time.Duration
		start := time.Now()
		err := Do(context.Background(), b, func(context.Context) error {
			at = append(at, time.Since(start))
			if len(at) < 7 {
				return errors.New("not yet")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Waits: nominal 1,2,4,8,8,8 s × (1 − 0.5 + r).
		nominal := []float64{1, 2, 4, 8, 8, 8}
		var want []time.Duration
		var sum time.Duration
		want = append(want, 0)
		for k, n := range nominal {
			sum += time.Duration(n * (0.5 + rnd[k]) * float64(time.Second))
			want = append(want, sum)
		}
		for k := range want {
			if d := at[k] - want[k]; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("attempt %d at %v, want %v", k, at[k], want[k])
			}
		}
		if b.Attempts() != 0 {
			t.Errorf("attempts after success = %d, want 0 (reset)", b.Attempts())
		}
	})
}

func TestBackoffBounds(t *testing.T) {
	var b Backoff // defaults: 500 ms ×2 to 30 s, ±20 %
	for k := range 20 {
		d := b.Next()
		nominal := min(500*time.Millisecond<<k, 30*time.Second)
		lo, hi := time.Duration(float64(nominal)*0.8), time.Duration(float64(nominal)*1.2)
		if d < lo || d >= hi {
			t.Errorf("wait %d = %v, want in [%v, %v)", k, d, lo, hi)
		}
	}
	none := Backoff{Min: time.Second, Jitter: -1}
	if d := none.Next(); d != time.Second {
		t.Errorf("no-jitter wait = %v", d)
	}
}

func TestRetryStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		errc := make(chan error, 1)
		go func() {
			errc <- Do(ctx, &Backoff{Min: time.Minute}, func(context.Context) error { calls++; return errors.New("down") })
		}()
		synctest.Wait() // Do is now sleeping after the first call
		cancel()
		err := <-errc
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Errorf("err = %v after %d calls, want canceled after 1", err, calls)
		}
		perm := errors.New("no such device")
		if err := Do(context.Background(), &Backoff{}, func(context.Context) error { return Permanent(perm) }); err != perm {
			t.Errorf("permanent: %v", err)
		}
	})
}
