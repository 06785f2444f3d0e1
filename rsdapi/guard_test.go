package rsdapi_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
)

// TestGuard runs every refusal against every API: each answers in its own
// error shape with the same status, and the registry is never touched.
func TestGuard(t *testing.T) {
	errBody := map[apiKind]func(msg string) string{
		pmd3:   func(m string) string { return `{"detail":"` + m + `"}` },
		goios:  func(m string) string { return `{"error":"` + m + `"}` + "\n" },
		appium: func(m string) string { return `{"status":"Forbidden","error":"` + m + `"}` },
	}
	tooBig := map[apiKind]string{
		pmd3:   `{"detail":"request body too large"}`,
		goios:  `{"error":"request body too large"}` + "\n",
		appium: `{"status":"Payload Too Large","error":"request body too large"}`,
	}
	// Each API's /shutdown-like mutating GET, to prove nothing ran.
	target := map[apiKind]string{pmd3: "/shutdown", goios: "/shutdown", appium: "/remotexpc/tunnels"}
	const rebinding = "forbidden host header \\\"evil.example:49151\\\" (DNS rebinding protection; the daemon's operator can allow this name with --allow-host evil.example)"
	const cross = "cross-origin request refused"
	tests := []struct {
		name string
		hdr  []string
		msg  string // "" = allowed
	}{
		{"foreign host", []string{"Host: evil.example:49151"}, rebinding},
		{"foreign host, no port", []string{"Host: evil.example"}, "forbidden host header \\\"evil.example\\\" (DNS rebinding protection; the daemon's operator can allow this name with --allow-host evil.example)"},
		{"foreign host, odd name", []string{"Host: ev'il"}, "forbidden host header \\\"ev'il\\\" (DNS rebinding protection; the daemon's operator can allow this name with --allow-host NAME)"},
		{"localhost", []string{"Host: localhost:49151"}, ""},
		{"LOCALHOST.", []string{"Host: LOCALHOST.:1"}, ""},
		{"IPv4 literal", []string{"Host: 127.0.0.1:49151"}, ""},
		{"IPv6 literal", []string{"Host: [::1]:49151"}, ""},
		{"allowed name", []string{"Host: tunneld.lan:49151"}, ""},
		{"cross-site fetch", []string{"Sec-Fetch-Site: cross-site"}, cross},
		{"same-site fetch", []string{"Sec-Fetch-Site: same-site"}, cross},
		{"user-typed URL", []string{"Sec-Fetch-Site: none"}, ""},
		{"foreign origin", []string{"Origin: http://evil.example"}, cross},
		{"null origin", []string{"Origin: null"}, cross},
		{"same origin", []string{"Host: localhost:49151", "Origin: http://localhost:49151", "Sec-Fetch-Site: same-origin"}, ""},
		{"origin on another port", []string{"Host: localhost:49151", "Origin: http://localhost:8080"}, cross},
	}
	for kind, name := range map[apiKind]string{pmd3: "pmd3", goios: "goios", appium: "appium"} {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				reg := rsdapitest.New()
				srv, _ := serve(t, kind, reg, func(c *rsdapi.Config) { c.AllowedHosts = []string{"tunneld.lan"} })
				r := do(t, srv, "GET", target[kind], "", tt.hdr...)
				if tt.msg == "" {
					if r.code == 403 {
						t.Fatalf("refused: %s", r.body)
					}
					return
				}
				r.want(t, 403, "application/json", errBody[kind](tt.msg))
				if c := reg.Calls(); c.Shutdowns != 0 {
					t.Errorf("registry shut down %d times by a refused request", c.Shutdowns)
				}
			})
		}
		t.Run(name+"/oversized body", func(t *testing.T) {
			srv, _ := serve(t, kind, rsdapitest.New(), func(c *rsdapi.Config) { c.MaxBodyBytes = 1024 })
			r := do(t, srv, "PUT", "/x", strings.Repeat("x", 2048))
			r.want(t, 413, "application/json", tooBig[kind])
		})
	}
}

func TestGuardChunkedOversizedBody(t *testing.T) {
	// A body without Content-Length is cut by the reader bound instead.
	srv, _ := serve(t, pmd3, rsdapitest.New(), func(c *rsdapi.Config) { c.MaxBodyBytes = 1024 })
	req := chunkedRequest(t, srv.URL+"/upstream", fmt.Sprintf(`{"url":"%s"}`, strings.Repeat("a", 4096)))
	req.want(t, 413, "application/json", `{"detail":"request body too large"}`)
}
