package rsdapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Metrics is a tiny Prometheus text-format (version 0.0.4) registry: integer
// counters and gauges with optional labels, updated by the daemon and
// rendered at GET /metrics. It is safe for concurrent use; updates are
// lock-free once a label set exists.
type Metrics struct {
	mu       sync.Mutex
	families []*family
}

// NewMetrics returns an empty registry.
func NewMetrics() *Metrics { return &Metrics{} }

type family struct {
	name, help, kind string
	labels           []string

	mu     sync.RWMutex
	series map[string]*atomic.Int64 // key: label values joined by \xff
	order  []string
}

// Counter is a monotonically increasing metric family.
type Counter struct{ f *family }

// Gauge is a metric family that goes up and down.
type Gauge struct{ f *family }

// Counter registers a counter family. name must be a valid Prometheus metric
// name (conventionally ending in _total); labels name its dimensions.
// Registering a name twice or an invalid name is a programming error and
// panics (at start-up, never on input).
func (m *Metrics) Counter(name, help string, labels ...string) *Counter {
	return &Counter{m.add(name, help, "counter", labels)}
}

// Gauge registers a gauge family.
func (m *Metrics) Gauge(name, help string, labels ...string) *Gauge {
	return &Gauge{m.add(name, help, "gauge", labels)}
}

func (m *Metrics) add(name, help, kind string, labels []string) *family {
	if !validName(name) {
		panic("rsdapi: invalid metric name " + strconv.Quote(name))
	}
	for _, l := range labels {
		if !validName(l) || strings.Contains(l, ":") || strings.HasPrefix(l, "__") {
			panic("rsdapi: invalid label name " + strconv.Quote(l))
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.families {
		if f.name == name {
			panic("rsdapi: metric " + name + " registered twice")
		}
	}
	f := &family{name: name, help: help, kind: kind, labels: slices.Clone(labels), series: map[string]*atomic.Int64{}}
	m.families = append(m.families, f)
	return f
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// cell returns the series for the given label values, creating it. A wrong
// number of values is a programming error and panics.
func (f *family) cell(values []string) *atomic.Int64 {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("rsdapi: metric %s wants %d label values, got %d", f.name, len(f.labels), len(values)))
	}
	key := strings.Join(values, "\xff")
	f.mu.RLock()
	c := f.series[key]
	f.mu.RUnlock()
	if c != nil {
		return c
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c = f.series[key]; c == nil {
		c = new(atomic.Int64)
		f.series[key] = c
		f.order = append(f.order, key)
	}
	return c
}

// Add increases the counter by n (n < 0 is ignored: counters never fall).
func (c *Counter) Add(n int64, labelValues ...string) {
	if n < 0 {
		return
	}
	c.f.cell(labelValues).Add(n)
}

// Inc adds one.
func (c *Counter) Inc(labelValues ...string) { c.Add(1, labelValues...) }

// Set sets the gauge.
func (g *Gauge) Set(v int64, labelValues ...string) { g.f.cell(labelValues).Store(v) }

// Add adds n (possibly negative) to the gauge.
func (g *Gauge) Add(n int64, labelValues ...string) { g.f.cell(labelValues).Add(n) }

// WriteTo renders every family in registration order, series in creation
// order. A family without series is rendered as one zero sample when it has
// no labels, so a fresh daemon still shows its counters.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	m.mu.Lock()
	fams := slices.Clone(m.families)
	m.mu.Unlock()
	for _, f := range fams {
		b.WriteString("# HELP ")
		b.WriteString(f.name)
		b.WriteByte(' ')
		b.WriteString(escapeHelp(f.help))
		b.WriteString("\n# TYPE ")
		b.WriteString(f.name)
		b.WriteByte(' ')
		b.WriteString(f.kind)
		b.WriteByte('\n')
		f.mu.RLock()
		if len(f.order) == 0 && len(f.labels) == 0 {
			b.WriteString(f.name)
			b.WriteString(" 0\n")
		}
		for _, key := range f.order {
			b.WriteString(f.name)
			if len(f.labels) > 0 {
				b.WriteByte('{')
				for i, v := range strings.Split(key, "\xff") {
					if i > 0 {
						b.WriteByte(',')
					}
					b.WriteString(f.labels[i])
					b.WriteString(`="`)
					b.WriteString(escapeLabel(v))
					b.WriteByte('"')
				}
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(strconv.FormatInt(f.series[key].Load(), 10))
			b.WriteByte('\n')
		}
		f.mu.RUnlock()
	}
	return b.WriteTo(w)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// ContentType is the Prometheus text exposition format's media type.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// ServeHTTP renders the metrics (any method but GET and HEAD gets 405).
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", metricsContentType)
	m.WriteTo(w)
}

// DaemonMetrics are the families tunneld exports (issue: tunnels, reconnects,
// bytes, errors by kind). The daemon updates them; rsdapi adds its own
// request counter.
type DaemonMetrics struct {
	Tunnels    *Gauge   // iosmux_tunnels{path}
	Reconnects *Counter // iosmux_tunnel_reconnects_total
	Bytes      *Counter // iosmux_tunnel_bytes_total{direction="in"|"out"}
	Errors     *Counter // iosmux_errors_total{kind}
	Requests   *Counter // iosmux_http_requests_total{api,code}
}

// NewDaemonMetrics registers the tunneld families on m.
func NewDaemonMetrics(m *Metrics) *DaemonMetrics {
	return &DaemonMetrics{
		Tunnels:    m.Gauge("iosmux_tunnels", "Established tunnels by path.", "path"),
		Reconnects: m.Counter("iosmux_tunnel_reconnects_total", "Tunnels rebuilt after their device came back."),
		Bytes:      m.Counter("iosmux_tunnel_bytes_total", "Bytes moved through tunnels.", "direction"),
		Errors:     m.Counter("iosmux_errors_total", "Errors by kind.", "kind"),
		Requests:   m.Counter("iosmux_http_requests_total", "HTTP API requests by API and status code.", "api", "code"),
	}
}
