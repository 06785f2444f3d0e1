package notify

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/lockdown"
)

// Bus is the device role: one notification centre per device, every
// connection to notification_proxy (secure or insecure) served on it. A
// post, from a host or from the device itself, is relayed once to every
// connection observing its name, the poster's included (notify.md §4).
// Safe for concurrent use.
type Bus struct {
	// OnPost, if set, is called with every name a host posts (not those the
	// device posts itself), outside the bus's lock.
	OnPost func(name string)

	mu     sync.Mutex
	conns  map[*observer]struct{}
	posted map[string]int
}

// queueLen bounds the relays waiting for one slow connection; past it the
// connection is dropped rather than letting the device's memory grow.
const queueLen = 1024

// writeTimeout bounds one write to a host.
const writeTimeout = 10 * time.Second

type observer struct {
	mu       sync.Mutex
	names    map[string]bool
	out      chan string
	overflow chan struct{} // closed when out was full
	once     sync.Once
	die      chan struct{} // closed by Shutdown
	dieOnce  sync.Once
	done     chan struct{} // closed when Serve has returned
}

// Post relays name to every connection observing it.
func (b *Bus) Post(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.posted == nil {
		b.posted = map[string]int{}
	}
	b.posted[name]++
	for o := range b.conns {
		o.mu.Lock()
		want := o.names[name]
		o.mu.Unlock()
		if !want {
			continue
		}
		select {
		case o.out <- name:
		default:
			o.once.Do(func() { close(o.overflow) })
		}
	}
}

// Shutdown ends every connection as a device going down does: each gets
// ProxyDeath and is closed. It returns when they have ended, or when ctx
// does.
func (b *Bus) Shutdown(ctx context.Context) {
	b.mu.Lock()
	var all []*observer
	for o := range b.conns {
		all = append(all, o)
	}
	b.mu.Unlock()
	for _, o := range all {
		o.dieOnce.Do(func() { close(o.die) })
	}
	for _, o := range all {
		select {
		case <-o.done:
		case <-ctx.Done():
			return
		}
	}
}

// Posts counts the posts of name so far, by hosts and by the device.
func (b *Bus) Posts(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.posted[name]
}

// Observers counts the connections observing name, for tests that must
// post only once a host is listening.
func (b *Bus) Observers(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for o := range b.conns {
		o.mu.Lock()
		if o.names[name] {
			n++
		}
		o.mu.Unlock()
	}
	return n
}

func (b *Bus) add(o *observer) {
	b.mu.Lock()
	if b.conns == nil {
		b.conns = map[*observer]struct{}{}
	}
	b.conns[o] = struct{}{}
	b.mu.Unlock()
}

func (b *Bus) remove(o *observer) {
	b.mu.Lock()
	delete(b.conns, o)
	b.mu.Unlock()
}

// Serve runs one connection (positioned after RSDCheckin or StartService)
// until the host sends Shutdown, hangs up, falls too far behind, or ctx
// ends (the device reboots). After Shutdown, and when ctx ends, it sends
// ProxyDeath first. Posts and observations get no answer. Messages
// without a known Command, or without a Name where one is needed, are
// ignored (SIM).
func (b *Bus) Serve(ctx context.Context, conn net.Conn) {
	o := &observer{names: map[string]bool{}, out: make(chan string, queueLen), overflow: make(chan struct{}),
		die: make(chan struct{}), done: make(chan struct{})}
	b.add(o)
	defer close(o.done)
	defer b.remove(o)
	pc := lockdown.NewPlistConn(conn, 64<<10)
	rctx, stopReading := context.WithCancel(ctx)
	readDone := make(chan error, 1)
	go func() { readDone <- b.read(rctx, pc, o) }()
	defer func() {
		stopReading()
		<-readDone
	}()
	send := func(m Message) bool {
		// Sends outlive ctx by a moment: ProxyDeath goes out as the device
		// goes down.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		defer cancel()
		return pc.Send(wctx, m.plist()) == nil
	}
	for {
		select {
		case name := <-o.out:
			if !send(Message{Command: CommandRelay, Name: name}) {
				return
			}
		case err := <-readDone:
			readDone <- err // for the deferred wait
			if err == nil {
				send(Message{Command: CommandDeath})
			}
			return
		case <-ctx.Done():
			send(Message{Command: CommandDeath})
			return
		case <-o.die:
			send(Message{Command: CommandDeath})
			return
		case <-o.overflow:
			return
		}
	}
}

// read handles the host's messages; it returns nil after Shutdown and the
// read error otherwise.
func (b *Bus) read(ctx context.Context, pc *lockdown.PlistConn, o *observer) error {
	for {
		var m map[string]any
		if err := pc.Receive(ctx, &m); err != nil {
			return err
		}
		msg, err := messageFrom(m)
		if err != nil {
			continue
		}
		switch msg.Command {
		case CommandObserve:
			if msg.Name != "" {
				o.mu.Lock()
				o.names[msg.Name] = true
				o.mu.Unlock()
			}
		case CommandPost:
			if msg.Name != "" {
				b.Post(msg.Name)
				if b.OnPost != nil {
					b.OnPost(msg.Name)
				}
			}
		case CommandShutdown:
			return nil
		}
	}
}
