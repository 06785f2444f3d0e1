package establish

import (
	"context"
	"crypto/rsa"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestKeyAhead: a prepared key is handed out once, the next caller gets a
// new one (made then, or prepared), and a wait ends with its context.
func TestKeyAhead(t *testing.T) {
	var made atomic.Int32
	release := make(chan struct{})
	k := &keyAhead{newKey: func() (*rsa.PrivateKey, error) {
		made.Add(1)
		<-release
		return &rsa.PrivateKey{}, nil
	}}
	k.prepare()
	k.prepare() // one under way is enough
	if k.ready() {
		t.Fatal("ready before the key is made")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if _, err := k.take(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take while making, context ends: %v", err)
	}
	cancel()
	close(release)
	k.prepare()
	for !k.ready() {
		time.Sleep(time.Millisecond)
	}
	a, err := k.take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.take(context.Background()) // nothing prepared: made now
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("the same key handed out twice")
	}
	if n := made.Load(); n != 3 {
		t.Fatalf("%d keys made, want 3 (the abandoned one, the prepared one, one on demand)", n)
	}
}
