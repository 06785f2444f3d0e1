package tunneld

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// daemonMetrics are the series tunneld exports at GET /metrics: tunnels,
// reconnects, bytes, errors by kind and API requests, plus the Go runtime's
// and the process's own (goroutines, descriptors, memory), so a leak shows
// from outside. Each daemon has its own registry.
type daemonMetrics struct {
	reg        *prometheus.Registry
	tunnels    *prometheus.GaugeVec     // iosmux_tunnels{path}
	reconnects prometheus.Counter       // iosmux_tunnel_reconnects_total
	bytes      *prometheus.CounterVec   // iosmux_tunnel_bytes_total{direction="in"|"out"}
	errors     *prometheus.CounterVec   // iosmux_errors_total{kind}
	requests   *prometheus.CounterVec   // iosmux_http_requests_total{api,code}
	setUp      *prometheus.HistogramVec // iosmux_tunnel_setup_seconds{path}
	setUpSteps *prometheus.HistogramVec // iosmux_tunnel_setup_step_seconds{step}
}

// setUpBuckets go from 1 ms (a step in process) to ~50 s (a Trust
// dialog), ×2.5 each.
var setUpBuckets = prometheus.ExponentialBuckets(0.001, 2.5, 13)

// paths are the values of iosmux_tunnels' label, listed at 0 from the start
// so a dashboard sees every path before its first tunnel.
var paths = []rsdapi.Path{rsdapi.PathUsbmuxUSB, rsdapi.PathUSBNCM, rsdapi.PathUsbmuxNetwork, rsdapi.PathMobdev2, rsdapi.PathWiFi}

func newDaemonMetrics() *daemonMetrics {
	m := &daemonMetrics{
		reg: prometheus.NewRegistry(),
		tunnels: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iosmux_tunnels", Help: "established tunnels by path.",
		}, []string{"path"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iosmux_tunnel_reconnects_total", Help: "Tunnels rebuilt after their device came back.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iosmux_tunnel_bytes_total", Help: "Bytes moved through tunnels.",
		}, []string{"direction"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iosmux_errors_total", Help: "Errors by kind.",
		}, []string{"kind"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iosmux_http_requests_total", Help: "HTTP API requests by API and status code.",
		}, []string{"api", "code"}),
		setUp: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "iosmux_tunnel_setup_seconds", Help: "Time from the start of an attempt to the tunnel listed, by path.", Buckets: setUpBuckets,
		}, []string{"path"}),
		setUpSteps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "iosmux_tunnel_setup_step_seconds", Help: "Time of each set-up step of listed tunnels (pair-verify, TLS-PSK handshake, CDTunnel handshake, trusted RSD catalog, …).", Buckets: setUpBuckets,
		}, []string{"step"}),
	}
	m.reg.MustRegister(m.tunnels, m.reconnects, m.bytes, m.errors, m.requests, m.setUp, m.setUpSteps,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, p := range paths {
		m.tunnels.WithLabelValues(string(p))
		m.setUp.WithLabelValues(string(p))
	}
	m.bytes.WithLabelValues("in")
	m.bytes.WithLabelValues("out")
	return m
}

// handler serves the exposition (text format, or what the scraper asks for).
func (m *daemonMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// observeSetUp records one tunnel's set-up (managerConfig.OnSetUp).
func (m *daemonMetrics) observeSetUp(path rsdapi.Path, total time.Duration, steps []establish.StepTime) {
	m.setUp.WithLabelValues(string(path)).Observe(total.Seconds())
	for _, s := range steps {
		m.setUpSteps.WithLabelValues(s.Step).Observe(s.Took.Seconds())
	}
}

// request counts one answered API request.
func (m *daemonMetrics) request(api string, code int) {
	m.requests.WithLabelValues(api, strconv.Itoa(code)).Inc()
}

// metricsSync copies the manager's counters into the Prometheus series
// (counters only add, so it keeps what it has added) and tells OnTunnel
// which tunnels came and went.
type metricsSync struct {
	dm       *daemonMetrics
	onTunnel func(up bool, t rsdapi.Tunnel)

	mu     sync.Mutex
	recon  uint64
	sent   uint64
	recv   uint64
	errors map[string]uint64
	paths  map[rsdapi.Path]bool // label values set so far
	listed map[string]rsdapi.Tunnel
}

func newMetricsSync(dm *daemonMetrics, onTunnel func(bool, rsdapi.Tunnel)) *metricsSync {
	return &metricsSync{dm: dm, onTunnel: onTunnel, errors: map[string]uint64{}, paths: map[rsdapi.Path]bool{}, listed: map[string]rsdapi.Tunnel{}}
}

// stats brings the series up to s.
func (m *metricsSync) stats(s managerStats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range s.ByPath {
		m.paths[p] = true
	}
	for p := range m.paths {
		m.dm.tunnels.WithLabelValues(string(p)).Set(float64(s.ByPath[p]))
	}
	add := func(c prometheus.Counter, have *uint64, now uint64) {
		if now > *have {
			c.Add(float64(now - *have))
			*have = now
		}
	}
	add(m.dm.reconnects, &m.recon, s.Reconnects)
	add(m.dm.bytes.WithLabelValues("out"), &m.sent, s.Sent)
	add(m.dm.bytes.WithLabelValues("in"), &m.recv, s.Received)
	kinds := make([]string, 0, len(s.Errors))
	for k := range s.Errors {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		have := m.errors[k]
		add(m.dm.errors.WithLabelValues(k), &have, s.Errors[k])
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
