package rsdapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
)

// TestClientAgainstServer reads our own pmd3 API through the client: the
// listing round-trips, lookups ignore dashes and case, and a device
// without a tunnel is ErrNoTunnel.
func TestClientAgainstServer(t *testing.T) {
	reg := rsdapitest.New()
	reg.Add(rsdapi.Tunnel{UDID: "00008110-001A2B3C4D5E6F70", Key: "usbmux-00008110-001A2B3C4D5E6F70-USB", Address: "fd7b:e5b:6f53::1", RSDPort: 64337})
	reg.Add(rsdapi.Tunnel{UDID: "AAAA", Key: "k2", Address: "127.0.0.2", RSDPort: 58783})
	srv := httptest.NewServer(rsdapi.New(rsdapi.Config{Registry: reg}).PMD3Handler())
	defer srv.Close()
	c := &rsdapi.Client{Addr: strings.TrimPrefix(srv.URL, "http://")}
	ctx := context.Background()
	all, err := c.Tunnels(ctx)
	if err != nil || len(all) != 2 || all[0].UDID != "00008110-001A2B3C4D5E6F70" || all[1].UDID != "AAAA" {
		t.Fatalf("Tunnels = %+v, %v", all, err)
	}
	l, err := c.Find(ctx, "00008110001a2b3c4d5e6f70")
	if err != nil {
		t.Fatal(err)
	}
	ap, err := l.RSD()
	if err != nil || ap.String() != "[fd7b:e5b:6f53::1]:64337" || l.Interface != "usbmux-00008110-001A2B3C4D5E6F70-USB" {
		t.Errorf("Find = %+v, RSD %v %v", l, ap, err)
	}
	if _, err := c.Find(ctx, "BBBB"); !errors.Is(err, rsdapi.ErrNoTunnel) {
		t.Errorf("Find(absent) = %v, want ErrNoTunnel", err)
	}
}

func TestClientBadAnswers(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"not JSON", "<html>", 200, "GET /"},
		{"wrong shape", `{"U": 3}`, 200, "GET /"},
		{"error status", `{}`, 500, "500"},
		{"too big", `{"U":[` + strings.Repeat(`{"tunnel-address":"::1","tunnel-port":1},`, 120000) + `]}`, 200, "listing over"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.code)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c := &rsdapi.Client{Addr: strings.TrimPrefix(srv.URL, "http://")}
			if _, err := c.Tunnels(context.Background()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Tunnels = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
