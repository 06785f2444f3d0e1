package notify

import (
	"context"
	"errors"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
)

// rig serves connections on one bus and waits for them at cleanup.
type rig struct {
	bus  *Bus
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func newRig(t *testing.T) *rig {
	testkit.CheckLeaks(t)
	r := &rig{bus: &Bus{}}
	r.ctx, r.stop = context.WithCancel(context.Background())
	t.Cleanup(func() { r.stop(); r.wg.Wait() })
	return r
}

func (r *rig) dial(t *testing.T) (*Client, net.Conn) {
	a, b := testkit.Pipe()
	r.wg.Go(func() { defer b.Close(); r.bus.Serve(r.ctx, b) })
	t.Cleanup(func() { a.Close() })
	return NewClient(a), a
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitObservers waits until n connections observe name: posts and
// observations get no answer, so this is how a test knows they arrived.
func waitObservers(t *testing.T, b *Bus, name string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if b.Observers(name) == n {
			return
		}
	}
	t.Fatalf("%d observers of %s, want %d", b.Observers(name), name, n)
}

// TestRelay: a post reaches every observer of its name once, the poster's
// own connection included, and nobody else; the device's own posts too.
func TestRelay(t *testing.T) {
	r := newRig(t)
	posted := make(chan string, 10)
	r.bus.OnPost = func(n string) { posted <- n }
	ctx := ctxT(t)
	obs1, _ := r.dial(t)
	obs2, _ := r.dial(t)
	poster, _ := r.dial(t)
	if err := obs1.Observe(ctx, "com.example.a", "com.example.b"); err != nil {
		t.Fatal(err)
	}
	if err := obs2.Observe(ctx, "com.example.b"); err != nil {
		t.Fatal(err)
	}
	if err := poster.Observe(ctx, "com.example.a"); err != nil {
		t.Fatal(err)
	}
	waitObservers(t, r.bus, "com.example.a", 2)
	waitObservers(t, r.bus, "com.example.b", 2)
	if err := poster.Post(ctx, "com.example.a"); err != nil {
		t.Fatal(err)
	}
	if n := <-posted; n != "com.example.a" {
		t.Fatalf("OnPost saw %s", n)
	}
	if r.bus.Posts("com.example.a") != 1 {
		t.Errorf("Posts = %d, want 1", r.bus.Posts("com.example.a"))
	}
	r.bus.Post("com.example.b") // the device's own, not seen by OnPost
	for _, tt := range []struct {
		c    *Client
		want []string
	}{{obs1, []string{"com.example.a", "com.example.b"}}, {obs2, []string{"com.example.b"}}, {poster, []string{"com.example.a"}}} {
		var got []string
		for range tt.want {
			n, err := tt.c.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, n)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("relays %v, want %v", got, tt.want)
		}
		short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		if n, err := tt.c.Next(short); err == nil {
			t.Errorf("an extra relay: %s", n)
		}
		cancel()
	}
	if len(posted) != 0 {
		t.Errorf("OnPost saw the device's own post: %s", <-posted)
	}
}

// TestShutdown: Shutdown is answered by ProxyDeath and the device closes;
// a device going away sends ProxyDeath unasked.
func TestShutdown(t *testing.T) {
	r := newRig(t)
	ctx := ctxT(t)
	c, conn := r.dial(t)
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	_ = conn
	c3, _ := r.dial(t)
	c3.Observe(ctx, "y")
	waitObservers(t, r.bus, "y", 1)
	r.bus.Shutdown(ctx)
	if _, err := c3.Next(ctx); !errors.Is(err, ErrProxyDeath) {
		t.Errorf("Next after Bus.Shutdown = %v, want ErrProxyDeath", err)
	}
	if r.bus.Observers("y") != 0 {
		t.Error("Shutdown returned with the connection still registered")
	}
	c2, _ := r.dial(t)
	c2.Observe(ctx, "x")
	waitObservers(t, r.bus, "x", 1)
	r.stop()
	if _, err := c2.Next(ctx); !errors.Is(err, ErrProxyDeath) {
		t.Errorf("Next after the device went away = %v, want ErrProxyDeath", err)
	}
}

// TestIgnored: the device ignores unknown commands and messages without a
// name, and keeps serving; the host skips unknown commands.
func TestIgnored(t *testing.T) {
	r := newRig(t)
	ctx := ctxT(t)
	_, conn := r.dial(t)
	pc := lockdown.NewPlistConn(conn, 0)
	for _, m := range []map[string]any{
		{"Command": "Bogus", "Name": "x"}, {"Command": CommandObserve}, {"Command": CommandPost, "Name": ""},
		{"Name": "x"}, {"Command": 5}, {"Command": CommandObserve, "Name": "y"},
	} {
		if err := pc.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	waitObservers(t, r.bus, "y", 1)
	if r.bus.Observers("x") != 0 {
		t.Error("an invalid message registered an observation")
	}

	a, b := testkit.Pipe()
	defer a.Close()
	go func() {
		dev := lockdown.NewPlistConn(b, 0)
		dev.Send(ctx, map[string]any{"Command": "SomethingNew"})
		dev.Send(ctx, map[string]any{"Command": CommandRelay, "Name": "z"})
		dev.Send(ctx, map[string]any{"Command": CommandRelay})
	}()
	c := NewClient(a)
	if n, err := c.Next(ctx); err != nil || n != "z" {
		t.Errorf("Next = %q, %v; want z", n, err)
	}
	if _, err := c.Next(ctx); !errors.Is(err, ErrMessage) {
		t.Errorf("relay without a name: %v", err)
	}
	if err := c.Post(ctx, ""); err == nil {
		t.Error("posting an empty name succeeded")
	}
}

// TestSlowObserver: a connection that stops reading is dropped once its
// queue is full; posts never block the bus.
func TestSlowObserver(t *testing.T) {
	r := newRig(t)
	ctx := ctxT(t)
	c, conn := r.dial(t)
	_ = conn
	c.Observe(ctx, "flood")
	waitObservers(t, r.bus, "flood", 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range queueLen * 100 {
			r.bus.Post("flood")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("posting blocked on a slow observer")
	}
	for deadline := time.Now().Add(5 * time.Second); r.bus.Observers("flood") != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow connection was not dropped")
		}
	}
}

func TestParseMessage(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Message
		ok   bool
	}{
		{`<plist><dict><key>Command</key><string>RelayNotification</string><key>Name</key><string>a.b</string></dict></plist>`, Message{CommandRelay, "a.b"}, true},
		{`<plist><dict><key>Command</key><string>ProxyDeath</string></dict></plist>`, Message{Command: CommandDeath}, true},
		{`<plist><dict><key>Command</key><string>PostNotification</string><key>Name</key><string>x</string><key>Payload</key><integer>1</integer></dict></plist>`, Message{CommandPost, "x"}, true},
		{`<plist><dict><key>Name</key><string>x</string></dict></plist>`, Message{}, false},
		{`<plist><dict><key>Command</key><string>RelayNotification</string><key>Name</key><integer>1</integer></dict></plist>`, Message{}, false},
		{`<plist><array/></plist>`, Message{}, false},
		{`not a plist`, Message{}, false},
	} {
		got, err := ParseMessage([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMessage(%s) = %+v, %v", tt.in, got, err)
		}
		if !tt.ok && !errors.Is(err, ErrMessage) {
			t.Errorf("error %v is not ErrMessage", err)
		}
	}
}
