package rsdapi_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/iosmux/iosmux/rsdapi"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuditLog: the requests that stop the daemon or tear tunnels down are
// logged at info level with the peer and the request line; a listing is
// not.
func TestAuditLog(t *testing.T) {
	tests := []struct {
		api            apiKind
		method, target string
		logged         bool
	}{
		{pmd3, "GET", "/shutdown", true},
		{pmd3, "GET", "/clear_tunnels", true},
		{pmd3, "GET", "/cancel?udid=" + udid1, true},
		{pmd3, "GET", "/", false},
		{goios, "GET", "/shutdown", true},
		{goios, "DELETE", "/tunnel/" + udid1, true},
		{goios, "GET", "/tunnels", false},
	}
	for _, tt := range tests {
		var logs syncBuf
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		srv, _ := serve(t, tt.api, sampleRegistry(), func(c *rsdapi.Config) { c.Logger = log })
		r := do(t, srv, tt.method, tt.target, "")
		if r.code >= 400 {
			t.Fatalf("%s %s = %d %s", tt.method, tt.target, r.code, r.body)
		}
		out := logs.String()
		want := `request="` + tt.method + " " + tt.target + ` HTTP/1.1"`
		got := strings.Contains(out, "level=INFO") && strings.Contains(out, want) && strings.Contains(out, "peer=127.0.0.1:")
		if got != tt.logged {
			t.Errorf("%s %s: logged %v, want %v:\n%s", tt.method, tt.target, got, tt.logged, out)
		}
	}
}
