package rsdapi

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// The APIs have no authentication (as the references): anything that can
// reach the port can start, cancel and list tunnels and stop the daemon. Two
// browser-borne attacks reach a loopback port anyway, and both are refused
// before any handler runs:
//
//   - DNS rebinding: a page on evil.example re-resolves its name to 127.0.0.1
//     and talks to us same-origin. Its requests carry "Host: evil.example";
//     only IP literals, "localhost" and names the operator allowed pass.
//     An IP literal cannot be rebound, so any one is accepted.
//   - Cross-origin requests (simple GETs need no CORS preflight and
//     /shutdown is a GET): refused when Sec-Fetch-Site says cross-site or
//     same-site, or when Origin is present and is not this very host.
//
// Non-browser clients (pymobiledevice3, go-ios, appium, curl) send neither
// Origin nor Sec-Fetch-Site and always send a Host naming the address they
// dialled.

// guard holds the host allow-list shared by the three APIs.
type guard struct {
	names map[string]bool // lower-case host names, without port
}

func newGuard(allowed []string) *guard {
	g := &guard{names: map[string]bool{"localhost": true}}
	for _, h := range allowed {
		h = strings.ToLower(strings.TrimSuffix(hostOnly(h), "."))
		if h != "" {
			g.names[h] = true
		}
	}
	return g
}

// hostOnly strips an optional port and IPv6 brackets from a Host value.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

func (g *guard) hostAllowed(hostport string) bool {
	if hostport == "" {
		return false
	}
	h := hostOnly(hostport)
	if h == "" {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return g.names[strings.ToLower(strings.TrimSuffix(h, "."))]
}

// check refuses foreign-Host and cross-origin requests; it returns the
// refusal message, or "" when the request may proceed.
func (g *guard) check(r *http.Request) string {
	if !g.hostAllowed(r.Host) {
		return "forbidden host header " + quoteForMessage(r.Host) + " (DNS rebinding protection; the daemon's operator can allow this name with --allow-host " + allowHint(r.Host) + ")"
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return "cross-origin request refused"
	}
	if origin, ok := r.Header["Origin"]; ok {
		if len(origin) != 1 {
			return "cross-origin request refused"
		}
		u, err := url.Parse(origin[0])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, r.Host) || !g.hostAllowed(u.Host) {
			return "cross-origin request refused"
		}
	}
	return ""
}

// allowHint is the name to give --allow-host for hostport, or NAME when
// the client's value is not a plain host name (nothing unsafe is echoed).
func allowHint(hostport string) string {
	h := strings.TrimSuffix(hostOnly(hostport), ".")
	if h == "" || len(h) > 253 || strings.Trim(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != "" {
		return "NAME"
	}
	return strings.ToLower(h)
}

// quoteForMessage bounds and sanitises a client-supplied value before it is
// echoed in an error message.
func quoteForMessage(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "…"
	}
	return "\"" + strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s) + "\""
}
