//go:build linux

package establish

import (
	"context"
	"flag"
	"net"
	"sync"
	"time"
)

// -split-link-mbs shapes the host's TCP connections in BenchmarkTLSPSKSplit
// (the raw stream's and every tunnel transport, control channels included)
// to that many MB/s each way, the way a USB or Wi-Fi link would bound them;
// 0 leaves loopback unshaped. The shaping is a pacer in this process (no
// qdisc on the shared loopback): a write waits for its bytes' turn before it
// goes out, a read waits after the bytes came in, so TCP's windows carry the
// back-pressure to the sender.
var splitLinkMBs = flag.Float64("split-link-mbs", 0, "BenchmarkTLSPSKSplit: pace the host's TCP connections to this many MB/s each way (0: unshaped)")

// splitDial is Options.Dial for the split benchmark.
func splitDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil || *splitLinkMBs <= 0 {
		return c, err
	}
	rate := *splitLinkMBs * 1e6
	return &linkConn{Conn: c, tcp: c.(*net.TCPConn), rd: pacer{rate: rate}, wr: pacer{rate: rate}}, nil
}

type linkConn struct {
	net.Conn
	tcp    *net.TCPConn
	rd, wr pacer
}

// linkChunk bounds how much one paced write sends at once.
const linkChunk = 64 << 10

func (c *linkConn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(len(b), linkChunk)
		c.wr.wait(k)
		w, err := c.Conn.Write(b[:k])
		n += w
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

func (c *linkConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b[:min(len(b), linkChunk)])
	c.rd.wait(n)
	return n, err
}

func (c *linkConn) CloseWrite() error { return c.tcp.CloseWrite() }

// pacer lets bytes through at rate bytes/s. It sleeps only once the
// bytes let through are more than linkSlack ahead of the clock (short
// sleeps overshoot, and a CPU left idle wakes late in this VM), and it
// forgets at most linkSlack of time the sender left unused, so bursts stay
// within about 2×linkSlack of the rate.
type pacer struct {
	mu   sync.Mutex
	rate float64
	next time.Time // when the bytes let through so far are on the wire
}

const linkSlack = time.Millisecond

func (p *pacer) wait(n int) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	now := time.Now()
	if floor := now.Add(-linkSlack); p.next.Before(floor) {
		p.next = floor
	}
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * 1e9))
	d := p.next.Sub(now)
	p.mu.Unlock()
	if d > linkSlack {
		time.Sleep(d)
	}
}
