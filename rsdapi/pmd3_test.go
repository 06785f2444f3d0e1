package rsdapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
)

const (
	json  = "application/json"
	udid0 = "00008030-0000000000000000"
	udid1 = "00008030-0000000000000001"
)

func TestPMD3List(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		srv, _ := serve(t, pmd3, rsdapitest.New())
		do(t, srv, "GET", "/", "").want(t, 200, json, `{}`)
	})
	t.Run("table order, grouped by UDID, unidentified hidden", func(t *testing.T) {
		srv, _ := serve(t, pmd3, sampleRegistry())
		want := `{"00008030-0000000000000000":[` +
			`{"tunnel-address":"fd00::0:1","tunnel-port":50000,"interface":"usbmux-00008030-0000000000000000-USB"},` +
			`{"tunnel-address":"fd99::1","tunnel-port":60000,"interface":"fe80::1c2b:3aff:fe4d:5e6f%enp0s20u1"}],` +
			`"00008030-0000000000000001":[{"tunnel-address":"fd00::1:1","tunnel-port":50001,"interface":"usbmux-00008030-0000000000000001-USB"}]}`
		do(t, srv, "GET", "/", "").want(t, 200, json, want)
	})
	t.Run("HEAD has headers only", func(t *testing.T) {
		srv, _ := serve(t, pmd3, sampleRegistry())
		r := do(t, srv, "HEAD", "/", "")
		r.want(t, 200, json, "")
	})
	t.Run("non-ASCII stays UTF-8 in framework JSON", func(t *testing.T) {
		tu := rsdapitest.Sample(0)
		tu.UDID = "é\"<\x01"
		srv, _ := serve(t, pmd3, rsdapitest.New(tu))
		do(t, srv, "GET", "/", "").want(t, 200, json,
			`{"é\"<\u0001":[{"tunnel-address":"fd00::0:1","tunnel-port":50000,"interface":"usbmux-00008030-0000000000000000-USB"}]}`)
	})
}

func TestPMD3FixedReplies(t *testing.T) {
	tests := []struct {
		name, target, body string
		calls              rsdapitest.Calls
	}{
		{"hello", "/hello", `{"message": "Hello, I'm alive"}`, rsdapitest.Calls{}},
		{"clear", "/clear_tunnels", `{"operation": "clear_tunnels", "data": true, "message": "Cleared tunnels..."}`, rsdapitest.Calls{Cleared: 1}},
		{"shutdown", "/shutdown", `{"operation": "shutdown", "data": true, "message": "Server shutting down..."}`, rsdapitest.Calls{Shutdowns: 1}},
		{"cancel", "/cancel?udid=" + udid0, `{"operation": "cancel", "udid": "` + udid0 + `", "data": true, "message": "tunnel ` + udid0 + ` Canceled ..."}`, rsdapitest.Calls{Canceled: []string{udid0}}},
		{"cancel unknown is still 200", "/cancel?udid=nope", `{"operation": "cancel", "udid": "nope", "data": true, "message": "tunnel nope Canceled ..."}`, rsdapitest.Calls{Canceled: []string{"nope"}}},
		{"cancel non-ASCII escaped as json.dumps does", "/cancel?udid=%C3%A9%F0%9F%98%80+x%7F", `{"operation": "cancel", "udid": "\u00e9\ud83d\ude00 x\u007f", "data": true, "message": "tunnel \u00e9\ud83d\ude00 x\u007f Canceled ..."}`, rsdapitest.Calls{Canceled: []string{"é😀 x\x7f"}}},
		{"last repeated parameter wins", "/cancel?udid=a&udid=b", `{"operation": "cancel", "udid": "b", "data": true, "message": "tunnel b Canceled ..."}`, rsdapitest.Calls{Canceled: []string{"b"}}},
		{"empty value is a value", "/cancel?udid", `{"operation": "cancel", "udid": "", "data": true, "message": "tunnel  Canceled ..."}`, rsdapitest.Calls{Canceled: []string{""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := sampleRegistry()
			srv, _ := serve(t, pmd3, reg)
			do(t, srv, "GET", tt.target, "").want(t, 200, json, tt.body)
			if got := reg.Calls(); !callsEqual(got, tt.calls) {
				t.Errorf("registry calls = %+v, want %+v", got, tt.calls)
			}
		})
	}
	t.Run("cancel removes the device from the listing", func(t *testing.T) {
		srv, _ := serve(t, pmd3, sampleRegistry())
		do(t, srv, "GET", "/cancel?udid="+udid0, "")
		do(t, srv, "GET", "/", "").want(t, 200, json,
			`{"00008030-0000000000000001":[{"tunnel-address":"fd00::1:1","tunnel-port":50001,"interface":"usbmux-00008030-0000000000000001-USB"}]}`)
	})
}

func callsEqual(a, b rsdapitest.Calls) bool {
	return slices.Equal(a.Canceled, b.Canceled) && a.Cleared == b.Cleared && a.Shutdowns == b.Shutdowns && len(a.Starts) == len(b.Starts)
}

type namedErr struct{}

func (namedErr) Error() string         { return "lockdown: pairing dialog declined" }
func (namedErr) ExceptionName() string { return "PairingDialogResponsePendingError" }

type typedErr struct{ step string }

func (e *typedErr) Error() string { return "tunnel: " + e.step + " failed" }

func TestPMD3StartTunnel(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		start   func(context.Context, rsdapi.StartRequest) (rsdapi.Tunnel, error)
		code    int
		ctype   string
		body    string
		started []rsdapi.StartRequest
	}{
		{
			name: "existing tunnel wins over any filter", target: "/start-tunnel?udid=" + udid1 + "&connection_type=bogus&ip=1.2.3.4",
			code: 200, ctype: json, body: `{"interface": "utun1", "port": 50001, "address": "fd00::1:1"}`,
		},
		{
			name: "exact match only (no dash tolerance)", target: "/start-tunnel?udid=000080300000000000000001",
			code: 501, ctype: json, body: `{"error": {"exception": "DeviceNotFoundError", "traceback": "usbmux: 000080300000000000000001: rsdapi: device not found"}}`,
			started: []rsdapi.StartRequest{{UDID: "000080300000000000000001"}},
		},
		{
			name: "unknown connection_type attempts nothing", target: "/start-tunnel?udid=X&connection_type=bogus",
			code: 501, ctype: json, body: `{"error": "task not created"}`,
		},
		{
			name: "new tunnel", target: "/start-tunnel?udid=NEW&ip=fe80::1%25en7&connection_type=usb",
			start: func(_ context.Context, req rsdapi.StartRequest) (rsdapi.Tunnel, error) {
				return rsdapi.Tunnel{UDID: req.UDID, Interface: "tun3", Address: "fd55::1", RSDPort: 12345}, nil
			},
			code: 200, ctype: json, body: `{"interface": "tun3", "port": 12345, "address": "fd55::1"}`,
			started: []rsdapi.StartRequest{{UDID: "NEW", IP: "fe80::1%en7", Connection: "usb"}},
		},
		{
			name: "no task", target: "/start-tunnel?udid=NEW&connection_type=wifi",
			start: func(context.Context, rsdapi.StartRequest) (rsdapi.Tunnel, error) {
				return rsdapi.Tunnel{}, fmt.Errorf("tunnel: no wifi service: %w", rsdapi.ErrNoTask)
			},
			code: 501, ctype: json, body: `{"error": "task not created"}`,
			started: []rsdapi.StartRequest{{UDID: "NEW", Connection: "wifi"}},
		},
		{
			name: "attempt failed", target: "/start-tunnel?udid=NEW&connection_type=usbmux",
			start: func(context.Context, rsdapi.StartRequest) (rsdapi.Tunnel, error) {
				return rsdapi.Tunnel{}, fmt.Errorf("tunnel: cdtunnel: %w", rsdapi.ErrTunnelFailed)
			},
			code: 404, ctype: json, body: `{"error": "something went wrong during tunnel creation"}`,
			started: []rsdapi.StartRequest{{UDID: "NEW", Connection: "usbmux"}},
		},
		{
			name: "error names itself", target: "/start-tunnel?udid=NEW",
			start: func(context.Context, rsdapi.StartRequest) (rsdapi.Tunnel, error) {
				return rsdapi.Tunnel{}, fmt.Errorf("wrapped: %w", namedErr{})
			},
			code: 501, ctype: json, body: `{"error": {"exception": "PairingDialogResponsePendingError", "traceback": "wrapped: lockdown: pairing dialog declined"}}`,
			started: []rsdapi.StartRequest{{UDID: "NEW"}},
		},
		{
			name: "innermost Go type names the exception", target: "/start-tunnel?udid=NEW",
			start: func(context.Context, rsdapi.StartRequest) (rsdapi.Tunnel, error) {
				return rsdapi.Tunnel{}, fmt.Errorf("outer: %w", &typedErr{"pair-verify"})
			},
			code: 501, ctype: json, body: `{"error": {"exception": "typedErr", "traceback": "outer: tunnel: pair-verify failed"}}`,
			started: []rsdapi.StartRequest{{UDID: "NEW"}},
		},
		{
			name: "missing udid", target: "/start-tunnel?ip=1.2.3.4",
			code: 422, ctype: json, body: `{"detail":[{"type":"missing","loc":["query","udid"],"msg":"Field required","input":null}]}`,
		},
		{
			name: "malformed escape", target: "/start-tunnel?udid=%zz",
			code: 400, ctype: json, body: `{"detail":"malformed query string"}`,
		},
		{
			name: "invalid UTF-8", target: "/start-tunnel?udid=%ff",
			code: 400, ctype: json, body: `{"detail":"malformed query string"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := sampleRegistry()
			reg.Start = tt.start
			srv, _ := serve(t, pmd3, reg)
			r := do(t, srv, "GET", tt.target, "")
			r.want(t, tt.code, tt.ctype, tt.body)
			if tt.code >= 400 && tt.ctype == json && tt.code != 400 && tt.code != 422 && r.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%d reply without X-Content-Type-Options: nosniff", tt.code)
			}
			if got := reg.Calls().Starts; !slices.Equal(got, tt.started) {
				t.Errorf("StartTunnel calls = %+v, want %+v", got, tt.started)
			}
		})
	}
	t.Run("pending tunnel shows up in the listing", func(t *testing.T) {
		reg := rsdapitest.New()
		reg.Pending(rsdapitest.Sample(5))
		srv, _ := serve(t, pmd3, reg)
		do(t, srv, "GET", "/start-tunnel?udid=00008030-0000000000000005", "").want(t, 200, json, `{"interface": "utun5", "port": 50005, "address": "fd00::5:1"}`)
		do(t, srv, "GET", "/", "").want(t, 200, json, `{"00008030-0000000000000005":[{"tunnel-address":"fd00::5:1","tunnel-port":50005,"interface":"usbmux-00008030-0000000000000005-USB"}]}`)
	})
	t.Run("client leaving cancels the start", func(t *testing.T) {
		reg := rsdapitest.New()
		entered := make(chan struct{})
		done := make(chan error, 1)
		reg.Start = func(ctx context.Context, _ rsdapi.StartRequest) (rsdapi.Tunnel, error) {
			close(entered)
			<-ctx.Done()
			done <- ctx.Err()
			return rsdapi.Tunnel{}, ctx.Err()
		}
		srv, _ := serve(t, pmd3, reg)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/start-tunnel?udid=X", nil)
		go func() { <-entered; cancel() }()
		if _, err := http.DefaultClient.Do(req); err == nil {
			t.Fatal("request succeeded after cancel")
		}
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("registry saw %v, want context.Canceled", err)
		}
	})
}

func TestPMD3Router(t *testing.T) {
	srv, _ := serve(t, pmd3, sampleRegistry())
	do(t, srv, "GET", "/nope", "").want(t, 404, json, `{"detail":"Not Found"}`)
	r := do(t, srv, "POST", "/hello", "")
	r.want(t, 405, json, `{"detail":"Method Not Allowed"}`)
	if got := r.header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("Allow = %q, want %q", got, "GET, HEAD")
	}
	r = do(t, srv, "PUT", "/upstream", "")
	r.want(t, 405, json, `{"detail":"Method Not Allowed"}`)
	r = do(t, srv, "GET", "/cancel//?udid=a%20b", "")
	r.want(t, 307, "-", "")
	if got, want := r.header.Get("Location"), "http://"+srv.Listener.Addr().String()+"/cancel?udid=a%20b"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	do(t, srv, "GET", "/metrics", "").want(t, 404, json, `{"detail":"Not Found"}`)
}

func TestPMD3Upstream(t *testing.T) {
	srv, _ := serve(t, pmd3, rsdapitest.New())
	do(t, srv, "GET", "/upstream", "").want(t, 200, json, `[]`)
	do(t, srv, "POST", "/upstream", `{"url":"http://b:1"}`, "Content-Type: application/json").want(t, 200, json,
		`{"operation": "add_upstream", "url": "http://b:1", "data": true, "message": "upstream http://b:1 added"}`)
	do(t, srv, "POST", "/upstream", `{"url": "http://a:1", "extra": 1}`).want(t, 200, json,
		`{"operation": "add_upstream", "url": "http://a:1", "data": true, "message": "upstream http://a:1 added"}`)
	do(t, srv, "POST", "/upstream", `{"url":"http://b:1"}`).want(t, 200, json,
		`{"operation": "add_upstream", "url": "http://b:1", "data": true, "message": "upstream http://b:1 added"}`)
	do(t, srv, "GET", "/upstream", "").want(t, 200, json, `["http://a:1","http://b:1"]`)
	do(t, srv, "DELETE", "/upstream", `{"url":"http://a:1"}`).want(t, 200, json,
		`{"operation": "remove_upstream", "url": "http://a:1", "data": true, "message": "upstream http://a:1 removed"}`)
	do(t, srv, "DELETE", "/upstream", `{"url":"http://never:1"}`).want(t, 200, json,
		`{"operation": "remove_upstream", "url": "http://never:1", "data": true, "message": "upstream http://never:1 removed"}`)
	do(t, srv, "GET", "/upstream", "").want(t, 200, json, `["http://b:1"]`)

	bad := []struct{ name, body, ctype, want string }{
		{"no body", "", "", `{"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]}`},
		{"no url", `{"u":1}`, "", `{"detail":[{"type":"missing","loc":["body","url"],"msg":"Field required","input":{"u":1}}]}`},
		{"url not a string", `{"url":5}`, "", `{"detail":[{"type":"string_type","loc":["body","url"],"msg":"Input should be a valid string","input":5}]}`},
		{"not an object", `[1]`, "", `{"detail":[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","input":[1]}]}`},
		{"bad json", `{"url":`, "application/json", `{"detail":[{"type":"json_invalid","loc":["body",7],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting value"}}]}`},
		{"text body", `url=x`, "text/plain", `{"detail":[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","input":"url=x"}]}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.ctype != "" {
				hdr = append(hdr, "Content-Type: "+tt.ctype)
			}
			do(t, srv, "POST", "/upstream", tt.body, hdr...).want(t, 422, json, tt.want)
		})
	}
	t.Run("oversized body", func(t *testing.T) {
		do(t, srv, "POST", "/upstream", `{"url":"`+strings.Repeat("a", 70<<10)+`"}`).want(t, 413, json, `{"detail":"request body too large"}`)
	})
	t.Run("bounded set", func(t *testing.T) {
		small, _ := serve(t, pmd3, rsdapitest.New(), func(c *rsdapi.Config) { c.MaxUpstreams = 1 })
		do(t, small, "POST", "/upstream", `{"url":"http://a"}`).want(t, 200, json, `{"operation": "add_upstream", "url": "http://a", "data": true, "message": "upstream http://a added"}`)
		do(t, small, "POST", "/upstream", `{"url":"http://b"}`).want(t, 400, json, `{"detail":"too many upstreams"}`)
	})
}

func TestPMD3Federation(t *testing.T) {
	// Upstream 1: another tunneld with device 1 and a second entry of device 0.
	other := rsdapitest.Sample(0)
	other.Key = "192.168.1.20"
	other.Address = "fd42::1"
	up1, _ := serve(t, pmd3, rsdapitest.New(rsdapitest.Sample(2), other))
	// Upstream 2: a server error (skipped).
	up2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }))
	defer up2.Close()
	// Upstream 3: never answers within the timeout (skipped).
	release := make(chan struct{})
	up3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer up3.Close()
	defer close(release)
	// Upstream 4: wrong shape (skipped; pymobiledevice3 would answer 500).
	up4 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"x":{"y":1}}`) }))
	defer up4.Close()
	// Upstream 5: entries pass through unmodified, whatever their keys.
	up5 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"REMOTE": [{"interface": "x", "tunnel-port": 1.50, "tunnel-address": "é", "extra": null}]}`)
	}))
	defer up5.Close()

	srv, _ := serve(t, pmd3, rsdapitest.New(rsdapitest.Sample(0)), func(c *rsdapi.Config) { c.UpstreamTimeout = 200 * time.Millisecond })
	for _, u := range []string{up1.URL, up2.URL, up3.URL, up4.URL, up5.URL, "ftp://nope", "http://[::1]:1"} {
		do(t, srv, "POST", "/upstream", `{"url":"`+u+`"}`).want(t, 200, json, fmt.Sprintf(`{"operation": "add_upstream", "url": "%s", "data": true, "message": "upstream %s added"}`, u, u))
	}
	// Upstreams merge in sorted-URL order; up1 < up5 by port is not
	// guaranteed, so build the expectation from the sorted list.
	urls := []string{up1.URL, up5.URL}
	slices.Sort(urls)
	local0 := `{"tunnel-address":"fd00::0:1","tunnel-port":50000,"interface":"usbmux-00008030-0000000000000000-USB"}`
	fromUp1 := map[string]string{
		udid0:                       `{"tunnel-address":"fd42::1","tunnel-port":50000,"interface":"192.168.1.20"}`,
		"00008030-0000000000000002": `{"tunnel-address":"fd00::2:1","tunnel-port":50002,"interface":"usbmux-00008030-0000000000000002-USB"}`,
	}
	remote := `"REMOTE":[{"interface":"x","tunnel-port":1.50,"tunnel-address":"é","extra":null}]`
	var want string
	if urls[0] == up1.URL {
		want = `{"` + udid0 + `":[` + local0 + `,` + fromUp1[udid0] + `],"00008030-0000000000000002":[` + fromUp1["00008030-0000000000000002"] + `],` + remote + `}`
	} else {
		want = `{"` + udid0 + `":[` + local0 + `,` + fromUp1[udid0] + `],` + remote + `,"00008030-0000000000000002":[` + fromUp1["00008030-0000000000000002"] + `]}`
	}
	do(t, srv, "GET", "/", "").want(t, 200, json, want)
}

func TestPMD3FederationLoopIsBounded(t *testing.T) {
	srv, _ := serve(t, pmd3, rsdapitest.New(rsdapitest.Sample(0)))
	do(t, srv, "POST", "/upstream", `{"url":"`+srv.URL+`"}`)
	r := do(t, srv, "GET", "/", "")
	// The request itself (hop 0) and four nested fetches of itself each
	// contribute the local entry once.
	entry := `{"tunnel-address":"fd00::0:1","tunnel-port":50000,"interface":"usbmux-00008030-0000000000000000-USB"}`
	want := `{"` + udid0 + `":[` + strings.TrimSuffix(strings.Repeat(entry+",", 5), ",") + `]}`
	r.want(t, 200, json, want)
}

// TestPMD3Metrics: GET /metrics is the daemon's handler, and every
// request of every API is reported with its status code once answered.
func TestPMD3Metrics(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv, _ := serve(t, pmd3, rsdapitest.New(), func(c *rsdapi.Config) {
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			io.WriteString(w, "iosmux_tunnels 0\n")
		})
		c.OnRequest = func(api string, code int) {
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%s %d", api, code))
			mu.Unlock()
		}
	})
	do(t, srv, "GET", "/hello", "")
	do(t, srv, "GET", "/nope", "")
	do(t, srv, "GET", "/metrics", "").want(t, 200, "text/plain; version=0.0.4", "iosmux_tunnels 0\n")
	do(t, srv, "POST", "/metrics", "").want(t, 405, json, `{"detail":"Method Not Allowed"}`)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"pmd3 200", "pmd3 404", "pmd3 200", "pmd3 405"}; !slices.Equal(seen, want) {
		t.Errorf("requests reported %q, want %q", seen, want)
	}
}

// TestLocalAddressListed: a userspace tunnel relayed at a loopback address
// of its own is listed there by pymobiledevice3's API (GET / and
// /start-tunnel) and appium's, while go-ios's keeps the tunnel address and
// its userspace proxy.
func TestLocalAddressListed(t *testing.T) {
	tu := rsdapitest.Sample(0)
	tu.Userspace, tu.UserspacePort, tu.LocalAddress = true, 60106, "127.94.1.7"
	reg := rsdapitest.New(tu)
	srv, _ := serve(t, pmd3, reg)
	do(t, srv, "GET", "/", "").want(t, 200, json,
		`{"00008030-0000000000000000":[{"tunnel-address":"127.94.1.7","tunnel-port":50000,"interface":"usbmux-00008030-0000000000000000-USB"}]}`)
	do(t, srv, "GET", "/start-tunnel?udid="+udid0, "").want(t, 200, json,
		`{"interface": "utun0", "port": 50000, "address": "127.94.1.7"}`)
	srv, _ = serve(t, goios, reg)
	do(t, srv, "GET", "/tunnels", "").want(t, 200, json,
		`[{"address":"fd00::0:1","rsdPort":50000,"udid":"00008030-0000000000000000","userspaceTun":true,"userspaceTunPort":60106}]`+"\n")
	srv, _ = serve(t, appium, reg)
	r := do(t, srv, "GET", "/remotexpc/tunnels/"+udid0, "")
	if r.code != 200 || !strings.Contains(r.body, `"address":"127.94.1.7","rsdPort":50000`) {
		t.Fatalf("appium: %d %s", r.code, r.body)
	}
}
