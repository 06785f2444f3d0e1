package crash

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestMover: the device moves, then pings in one write; the host accepts
// it. A device that says something else, or nothing, is an error.
func TestMover(t *testing.T) {
	a, b := net.Pipe()
	var moved atomic.Bool
	go func() {
		defer b.Close()
		ServeMover(context.Background(), b, func() { moved.Store(true) })
	}()
	if err := Flush(context.Background(), a); err != nil || !moved.Load() {
		t.Fatalf("Flush = %v, moved %v", err, moved.Load())
	}

	// One write: a host that reads once (go-ios) gets all of it.
	x, y := net.Pipe()
	go func() { defer y.Close(); ServeMover(context.Background(), y, nil) }()
	buf := make([]byte, 16)
	n, _ := x.Read(buf)
	if string(buf[:n]) != "ping\x00" {
		t.Errorf("a single read got %q", buf[:n])
	}
	x.Close()

	p, q := net.Pipe()
	go func() { q.Write([]byte("pong\x00")); q.Close() }()
	if err := Flush(context.Background(), p); err == nil || !strings.Contains(err.Error(), "pong") {
		t.Errorf("Flush on pong = %v", err)
	}
	r, s := net.Pipe()
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := Flush(ctx, r); err == nil {
		t.Error("Flush on a silent device returned nil")
	}
}

const sampleReport = `{"app_name":"Demo","timestamp":"2026-01-01 12:00:00.00 +0000","app_version":"1.0","bug_type":"309","os_version":"iPhone OS 17.4 (21E219)","bundleID":"com.example.demo","incident_id":"6A1F…","name":"Demo"}
{"exception":{"type":"EXC_BAD_ACCESS","signal":"SIGSEGV"}}`

func TestParseHeader(t *testing.T) {
	h, body, err := ParseHeader([]byte(sampleReport))
	if err != nil {
		t.Fatal(err)
	}
	want := Header{BugType: "309", Name: "Demo", Timestamp: "2026-01-01 12:00:00.00 +0000", IncidentID: "6A1F…",
		OSVersion: "iPhone OS 17.4 (21E219)", BundleID: "com.example.demo"}
	if h != want || !strings.HasPrefix(string(body), `{"exception"`) || h.Kind() != "crash" {
		t.Errorf("ParseHeader = %+v, %q", h, body)
	}
	if h, _, err := ParseHeader([]byte(`{"bug_type":210,"name":"kernel"}`)); err != nil || h.BugType != "210" || h.Kind() != "panic" {
		t.Errorf("numeric bug_type: %+v, %v", h, err)
	}
	for _, bad := range []string{"", "Incident Identifier: x\n", "{not json}\n", "[1]\n"} {
		if _, _, err := ParseHeader([]byte(bad)); err == nil {
			t.Errorf("ParseHeader(%q) accepted", bad)
		}
	}
}

func TestSavedReport(t *testing.T) {
	const img = "/System/Library/PrivateFrameworks/OSAnalytics.framework/OSAnalytics"
	for _, tt := range []struct {
		proc, image, msg, want string
	}{
		{"/usr/libexec/osanalyticshelper", img, "Saved type 309(crash) report to /private/var/mobile/Library/Logs/CrashReporter/Demo-2026-01-01-120000.ips", "Demo-2026-01-01-120000.ips"},
		{"/usr/libexec/osanalyticshelper", img, "Saved type 210 report to /x/panic-full-2026.panic", "panic-full-2026.panic"},
		{"/usr/libexec/osanalyticshelper", img, "Saved type 309 report to /x/y.txt", ""},
		{"/usr/libexec/osanalyticshelper", "/usr/lib/libSystem.dylib", "Saved type 309 report to /x/y.ips", ""},
		{"/usr/libexec/ReportCrash", img, "Saved type 309 report to /x/y.ips", ""},
		{"/usr/libexec/osanalyticshelper", img, "Deleted /x/y.ips", ""},
	} {
		got, ok := SavedReport(tt.proc, tt.image, tt.msg)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("SavedReport(%q) = %q, %v; want %q", tt.msg, got, ok, tt.want)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte(sampleReport))
	f.Add([]byte(`{"bug_type":210}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := ParseHeader(b)
		if err == nil && len(body) > len(b) {
			t.Fatalf("body longer than the report: %+v", h)
		}
	})
}
