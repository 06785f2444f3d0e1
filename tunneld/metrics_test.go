package tunneld

import (
	"io"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/rsdapi"
)

// TestMetricsNames: /metrics keeps the series of the hand-written
// exposition it replaced (names, types, label names) and adds the Go and
// process collectors.
func TestMetricsNames(t *testing.T) {
	m := newDaemonMetrics()
	s := newMetricsSync(m, nil)
	s.stats(managerStats{ByPath: map[rsdapi.Path]int{"usbmux-usb": 2}, Reconnects: 3, Sent: 100, Received: 50, Errors: map[string]uint64{"tunnel_dead": 1}})
	m.request("pmd3", 200)
	m.observeSetUp("usbmux-usb", 30*time.Millisecond, []establish.StepTime{{Step: establish.StepTLSPSK, Took: 2 * time.Millisecond}, {Step: stepListed, Took: 10 * time.Microsecond}})
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	types := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`).FindAllStringSubmatch(text, -1) {
		types[m[1]] = m[2]
	}
	// The families and label names of the previous exposition.
	for name, want := range map[string]string{
		"iosmux_tunnels":                   "gauge",
		"iosmux_tunnel_reconnects_total":   "counter",
		"iosmux_tunnel_bytes_total":        "counter",
		"iosmux_errors_total":              "counter",
		"iosmux_http_requests_total":       "counter",
		"iosmux_tunnel_setup_seconds":      "histogram",
		"iosmux_tunnel_setup_step_seconds": "histogram",
		"go_goroutines":                    "gauge",
		"process_open_fds":                 "gauge",
		"process_resident_memory_bytes":    "gauge",
	} {
		if types[name] != want {
			t.Errorf("%s: type %q, want %q", name, types[name], want)
		}
	}
	for _, series := range []string{
		`iosmux_tunnels{path="usbmux-usb"} 2`,
		`iosmux_tunnels{path="wifi"} 0`,
		`iosmux_tunnel_reconnects_total 3`,
		`iosmux_tunnel_bytes_total{direction="out"} 100`,
		`iosmux_tunnel_bytes_total{direction="in"} 50`,
		`iosmux_errors_total{kind="tunnel_dead"} 1`,
		`iosmux_http_requests_total{api="pmd3",code="200"} 1`,
		`iosmux_tunnel_setup_seconds_count{path="usbmux-usb"} 1`,
		`iosmux_tunnel_setup_seconds_bucket{path="usbmux-usb",le="0.015625"} 0`,
		`iosmux_tunnel_setup_seconds_bucket{path="usbmux-usb",le="0.0390625"} 1`,
		`iosmux_tunnel_setup_seconds_count{path="wifi"} 0`,
		`iosmux_tunnel_setup_step_seconds_bucket{step="TLS-PSK handshake",le="0.0025"} 1`,
		`iosmux_tunnel_setup_step_seconds_count{step="listed"} 1`,
	} {
		if !strings.Contains(text, "\n"+series+"\n") {
			t.Errorf("no %s in\n%s", series, text)
		}
	}
	// Counters only add: the same totals again change nothing.
	s.stats(managerStats{Reconnects: 3, Sent: 100})
	rec = httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if b := rec.Body.String(); !strings.Contains(b, "\niosmux_tunnel_reconnects_total 3\n") || !strings.Contains(b, "\niosmux_tunnels{path=\"usbmux-usb\"} 0\n") {
		t.Errorf("after the same totals:\n%s", b)
	}
	var ours []string
	for n := range types {
		if strings.HasPrefix(n, "iosmux_") {
			ours = append(ours, n)
		}
	}
	slices.Sort(ours)
	if len(ours) != 7 {
		t.Errorf("iosmux families %v, want the seven above", ours)
	}
}
