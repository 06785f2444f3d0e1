package tunnel

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
)

// Liveness. A CDTunnel has no keepalive message of its own (tunnel.md §8.1;
// the probe is §8.3): a
// tunnel ends when its transport ends. A transport that goes silent without
// ending (a device that hangs, a path that black-holes) would leave the
// tunnel up forever, so the pump sends an ICMPv6 echo request to the device
// address whenever nothing has arrived for Interval, and declares the device
// dead (ErrDead) when nothing at all has arrived for Timeout.
//
// Whether a real iPhone answers echo requests on its tunnel address is
// UNCONFIRMED in the references. To never tear down a healthy tunnel to a
// device that ignores echo, the deadline is armed only once an echo reply has
// been seen; until then probes go out (every Interval for the first
// unarmedProbes, then every 16 Intervals) and only the transport's own end
// (EOF, TCP keepalive, QUIC idle timeout) ends the tunnel.

// Default probe timing: a silent tunnel is declared dead between Timeout and
// Timeout+Interval after its last packet, within 5 s.
const (
	DefaultProbeInterval = 500 * time.Millisecond
	DefaultProbeTimeout  = 3 * time.Second

	unarmedProbes = 10
)

// ProbeConfig configures the liveness probe.
type ProbeConfig struct {
	// Interval is the idle time after which an echo request is sent; 0 means
	// DefaultProbeInterval.
	Interval time.Duration
	// Timeout is the silence after which the device is dead; 0 means
	// DefaultProbeTimeout.
	Timeout time.Duration
	// Disable turns the probe off (the device role, QUIC with its own idle
	// timeout).
	Disable bool
}

type prober struct {
	enabled     bool
	interval    time.Duration
	timeout     time.Duration
	local, peer netip.Addr
	id          uint16
	seq         uint16
	armed       atomic.Bool
}

func (pr *prober) init(cfg ProbeConfig, local, peer netip.Addr) error {
	if cfg.Disable {
		return nil
	}
	if !local.Is6() || !peer.Is6() {
		return fmt.Errorf("tunnel: liveness probe needs IPv6 local and peer addresses, have %v and %v", local, peer)
	}
	pr.interval = cfg.Interval
	if pr.interval <= 0 {
		pr.interval = DefaultProbeInterval
	}
	pr.timeout = cfg.Timeout
	if pr.timeout <= 0 {
		pr.timeout = DefaultProbeTimeout
	}
	id, err := randomID()
	if err != nil {
		return fmt.Errorf("tunnel: probe identifier: %w", err)
	}
	pr.enabled, pr.local, pr.peer, pr.id = true, local, peer, id
	return nil
}

// isReply reports whether pkt answers one of our probes; it also arms the
// deadline. Called from the receive loop only.
func (pr *prober) isReply(pkt []byte) bool {
	if !pr.enabled {
		return false
	}
	id, ok := echoID(pkt, icmpv6EchoReply)
	if !ok || id != pr.id {
		return false
	}
	pr.armed.Store(true)
	return true
}

// probeData marks our echo requests in captures.
var probeData = []byte("iosmux-alive")

// probeLoop fails the pump when the armed deadline passes and asks
// probeSender for an echo request while the link is idle. Sending happens on
// its own goroutine because a write may block behind a stalled transport,
// which is exactly when the deadline must still fire.
func (p *Pump) probeLoop() {
	defer p.wg.Done()
	pr := &p.probe
	kick := make(chan struct{}, 1)
	p.wg.Add(1)
	go p.probeSender(kick)
	// One probe at once learns whether the device answers echo at all, even
	// if the link is never idle afterwards.
	kick <- struct{}{}
	ticker := time.NewTicker(pr.interval)
	defer ticker.Stop()
	for ticks := 1; ; ticks++ {
		select {
		case <-p.stop:
			return
		case <-ticker.C:
			// Monotonic: a wall-clock jump must not kill the tunnel.
			idle := time.Since(p.start) - time.Duration(p.lastRx.Load())
			armed := pr.armed.Load()
			if armed && idle >= pr.timeout {
				p.fail(fmt.Errorf("%w: nothing received for %v", ErrDead, idle.Round(time.Millisecond)))
				return
			}
			if idle < pr.interval {
				continue
			}
			if !armed && ticks > unarmedProbes && ticks%16 != 0 {
				continue
			}
			select {
			case kick <- struct{}{}:
			default: // the previous probe is still being written
			}
		}
	}
}

// probeSender writes one echo request per kick until the pump stops.
func (p *Pump) probeSender(kick <-chan struct{}) {
	defer p.wg.Done()
	pr := &p.probe
	var pkt []byte
	for {
		select {
		case <-p.stop:
			return
		case <-kick:
		}
		pr.seq++
		pkt = appendEcho(pkt[:0], icmpv6EchoRequest, pr.local, pr.peer, pr.id, pr.seq, probeData)
		if err := p.conn.WritePacket(pkt); err != nil {
			p.fail(connError("write", err))
			return
		}
		p.st.probes.Add(1)
	}
}
