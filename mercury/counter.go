package mercury

import (
	"bytes"
	"sync"

	"github.com/iosmux/iosmux/xpc"
)

// Counter keeps a device's snapshot counter: Stamp sets Facts.Monotonic,
// raising it whenever what a snapshot would say changed since the last
// Stamp. The builders stay pure; the counter lives in the facts.
type Counter struct {
	mu   sync.Mutex
	last []byte
	n    int64
}

// Stamp sets f.Monotonic and reports whether the snapshot changed.
func (c *Counter) Stamp(f *Facts) bool {
	g := *f
	g.Monotonic = 0
	var key []byte
	if s, _, err := DeviceStateSnapshot(&g); err == nil {
		key, _ = xpc.AppendValue(nil, s)
	} else {
		key = []byte("error: " + err.Error())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.n == 0 || !bytes.Equal(key, c.last)
	if changed {
		c.n++
		c.last = key
	}
	f.Monotonic = c.n
	return changed
}
