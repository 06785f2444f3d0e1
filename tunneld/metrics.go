package tunneld

import (
	"slices"
	"sync"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/tunnel"
)

// metricsSync copies the manager's counters into the Prometheus families
// (rsdapi counters only add, so it keeps what it has added) and tells
// OnTunnel which tunnels came and went.
type metricsSync struct {
	dm       *rsdapi.DaemonMetrics
	onTunnel func(up bool, t rsdapi.Tunnel)

	mu     sync.Mutex
	recon  uint64
	sent   uint64
	recv   uint64
	errors map[string]uint64
	paths  map[string]bool // label values set so far
	listed map[string]rsdapi.Tunnel
}

func newMetricsSync(dm *rsdapi.DaemonMetrics, onTunnel func(bool, rsdapi.Tunnel)) *metricsSync {
	return &metricsSync{dm: dm, onTunnel: onTunnel, errors: map[string]uint64{}, paths: map[string]bool{}, listed: map[string]rsdapi.Tunnel{}}
}

// stats brings the families up to s.
func (m *metricsSync) stats(s tunnel.ManagerStats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range s.ByPath {
		m.paths[p] = true
	}
	for p := range m.paths {
		m.dm.Tunnels.Set(int64(s.ByPath[p]), p)
	}
	add := func(c *rsdapi.Counter, have *uint64, now uint64, labels ...string) {
		if now > *have {
			c.Add(int64(now-*have), labels...)
			*have = now
		}
	}
	add(m.dm.Reconnects, &m.recon, s.Reconnects)
	add(m.dm.Bytes, &m.sent, s.Sent, "out")
	add(m.dm.Bytes, &m.recv, s.Received, "in")
	kinds := make([]string, 0, len(s.Errors))
	for k := range s.Errors {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		have := m.errors[k]
		add(m.dm.Errors, &have, s.Errors[k], k)
		m.errors[k] = have
	}
}

// changed diffs the listing against the last one for OnTunnel.
func (m *metricsSync) changed(now []rsdapi.Tunnel) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]bool, len(now))
	for _, t := range now {
		k := t.Key + "\x00" + t.Address
		seen[k] = true
		if _, ok := m.listed[k]; !ok {
			m.listed[k] = t
			if m.onTunnel != nil {
				m.onTunnel(true, t)
			}
		}
	}
	for k, t := range m.listed {
		if !seen[k] {
			delete(m.listed, k)
			if m.onTunnel != nil {
				m.onTunnel(false, t)
			}
		}
	}
}
