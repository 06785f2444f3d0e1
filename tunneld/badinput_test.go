package tunneld_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/tunneld"
)

// TestBadInput sends the running daemon what a confused or hostile client
// would: each request gets its API's error status with a JSON body, and
// the daemon keeps serving its tunnel afterwards.
func TestBadInput(t *testing.T) {
	f := fleet(t, 1, "")
	r := daemon(t, f, nil)
	udid := f.Devices()[0].UDID()
	waitFor(t, "the tunnel", func() bool { return listed(t, r, udid) })

	big := strings.Repeat("x", 1<<20)
	tests := []struct {
		name    string
		api     string
		method  string
		path    string
		host    string
		origin  string
		body    string
		code    int
		inBody  string
		notJSON bool // the reference reply has no JSON body
	}{
		{name: "start-tunnel unknown UDID (pymobiledevice3 answers 501 DeviceNotFoundError)", api: tunneld.APIPMD3, path: "/start-tunnel?udid=00008030-FFFFFFFFFFFFFFFF", code: 501, inBody: "DeviceNotFoundError"},
		{name: "start-tunnel unknown UDID over USB-NCM: task not created", api: tunneld.APIPMD3, path: "/start-tunnel?udid=nope&connection_type=usb", code: 501, inBody: "task not created"},
		{name: "start-tunnel without udid", api: tunneld.APIPMD3, path: "/start-tunnel", code: 422, inBody: "missing"},
		{name: "start-tunnel bad connection type", api: tunneld.APIPMD3, path: "/start-tunnel?udid=00008030-0000000000000009&connection_type=bluetooth", code: 501, inBody: "task not created"},
		{name: "malformed query", api: tunneld.APIPMD3, path: "/cancel?udid=%zz", code: 400, inBody: "malformed"},
		{name: "cancel without udid", api: tunneld.APIPMD3, path: "/cancel", code: 422},
		{name: "unknown path", api: tunneld.APIPMD3, path: "/nope", code: 404, inBody: "Not Found"},
		{name: "wrong method", api: tunneld.APIPMD3, method: "POST", path: "/hello", code: 405},
		{name: "oversized body", api: tunneld.APIPMD3, method: "POST", path: "/upstream", body: `{"url":"` + big + `"}`, code: 413},
		{name: "upstream without url", api: tunneld.APIPMD3, method: "POST", path: "/upstream", body: `{"uri":"x"}`, code: 422},
		{name: "upstream not JSON", api: tunneld.APIPMD3, method: "POST", path: "/upstream", body: `{"url":`, code: 422},
		{name: "foreign Host (DNS rebinding)", api: tunneld.APIPMD3, path: "/", host: "evil.example:49151", code: 403},
		{name: "cross-origin browser", api: tunneld.APIPMD3, path: "/clear_tunnels", origin: "https://evil.example", code: 403},
		{name: "go-ios unknown UDID", api: tunneld.APIGoIOS, path: "/tunnel/00008030-FFFFFFFFFFFFFFFF", code: 404, inBody: "tunnel not found"},
		{name: "go-ios foreign Host", api: tunneld.APIGoIOS, path: "/tunnels", host: "evil.example", code: 403},
		{name: "appium unknown UDID", api: tunneld.APIAppium, path: "/remotexpc/tunnels/nope", code: 404, inBody: "Tunnel not found"},
		{name: "appium bad waitMs", api: tunneld.APIAppium, path: "/remotexpc/tunnels/" + udid + "?waitMs=-5", code: 400, inBody: "waitMs"},
		{name: "appium bad device id", api: tunneld.APIAppium, path: "/remotexpc/tunnels/device/abc", code: 400},
		{name: "appium malformed PUT", api: tunneld.APIAppium, method: "PUT", path: "/remotexpc/tunnels/x", body: "{", code: 400, inBody: "Malformed"},
		{name: "appium oversized PUT", api: tunneld.APIAppium, method: "PUT", path: "/remotexpc/tunnels/x", body: big, code: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(method, r.url(tt.api, tt.path), body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("status %d, want %d; body %s", resp.StatusCode, tt.code, b)
			}
			if !tt.notJSON && !json.Valid(b) {
				t.Errorf("body is not JSON: %q", b)
			}
			if tt.inBody != "" && !strings.Contains(string(b), tt.inBody) {
				t.Errorf("body %s lacks %q", b, tt.inBody)
			}
		})
	}
	// Still alive, tunnel untouched.
	code, b := get(t, r.url(tunneld.APIPMD3, "/hello"))
	if code != 200 || !strings.Contains(string(b), "alive") {
		t.Errorf("/hello after the bad input = %d %s", code, b)
	}
	if !listed(t, r, udid) {
		t.Error("tunnel gone after bad input")
	}
}

// TestStartCancelClear drives the on-demand API: /start-tunnel returns the
// existing tunnel, /cancel removes it and /start-tunnel builds it again at
// once; /clear_tunnels empties the table and the device comes back.
func TestStartCancelClear(t *testing.T) {
	f := fleet(t, 2, "")
	r := daemon(t, f, nil)
	udid := f.Devices()[0].UDID()
	waitFor(t, "both tunnels", func() bool { return len(listing(t, r)) == 2 })

	var st struct {
		Interface string `json:"interface"`
		Port      int    `json:"port"`
		Address   string `json:"address"`
	}
	code, b := get(t, r.url(tunneld.APIPMD3, "/start-tunnel?udid="+udid))
	if code != 200 || json.Unmarshal(b, &st) != nil || st.Address != listing(t, r)[udid][0].Address || st.Interface != "netstack" {
		t.Fatalf("start-tunnel on an existing tunnel = %d %s", code, b)
	}
	code, b = get(t, r.url(tunneld.APIPMD3, "/cancel?udid="+udid))
	if code != 200 || !strings.Contains(string(b), "Canceled") {
		t.Fatalf("/cancel = %d %s", code, b)
	}
	if listed(t, r, udid) {
		t.Fatal("cancelled tunnel still listed")
	}
	code, b = get(t, r.url(tunneld.APIPMD3, "/start-tunnel?udid="+udid+"&connection_type=usbmux"))
	if code != 200 || json.Unmarshal(b, &st) != nil || st.Port == 0 {
		t.Fatalf("start-tunnel after cancel = %d %s", code, b)
	}
	if !listed(t, r, udid) {
		t.Error("tunnel built on demand not listed")
	}
	code, _ = get(t, r.url(tunneld.APIPMD3, "/clear_tunnels"))
	if n := len(listing(t, r)); code != 200 || n != 0 {
		t.Fatalf("/clear_tunnels = %d, %d still listed", code, n)
	}
	waitFor(t, "devices back after clear", func() bool { return len(listing(t, r)) == 2 })

	// go-ios: DELETE removes, the manager recreates it (go-ios's refresh).
	req, _ := http.NewRequest(http.MethodDelete, r.url(tunneld.APIGoIOS, "/tunnel/"+udid), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE /tunnel = %d", resp.StatusCode)
	}
	waitFor(t, "go-ios refresh", func() bool {
		code, _ := get(t, r.url(tunneld.APIGoIOS, "/tunnel/"+udid))
		return code == 200
	})
	// appium: ready entries carry the RSD catalog.
	code, b = get(t, r.url(tunneld.APIAppium, "/remotexpc/tunnels/"+udid+"?waitMs=5000"))
	if code != 200 || !strings.Contains(string(b), "com.apple.mobile.lockdown.remote.trusted") {
		t.Errorf("appium entry = %d %s", code, b)
	}
	code, b = get(t, r.url(tunneld.APIGoIOS, "/ready"))
	if code != 200 {
		t.Errorf("/ready = %d %s", code, b)
	}
}
