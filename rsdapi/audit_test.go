package rsdapi_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/rsdapi"
)

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
		var logs testkit.Buffer
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
