package rsdapi_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
)

const goT0 = `{"address":"fd00::0:1","rsdPort":50000,"udid":"00008030-0000000000000000","userspaceTun":false,"userspaceTunPort":0}`
const goT1 = `{"address":"fd00::1:1","rsdPort":50001,"udid":"00008030-0000000000000001","userspaceTun":false,"userspaceTunPort":0}`

func TestGoIOS(t *testing.T) {
	const jsonErr = "application/json"
	tests := []struct {
		name, method, target string
		code                 int
		ctype, body          string
	}{
		{"health", "GET", "/health", 200, "-", ""},
		{"health wrong method", "POST", "/health", 405, "-", ""},
		{"ready", "GET", "/ready", 200, "-", ""},
		{"list, one per device", "GET", "/tunnels", 200, "application/json", "[" + goT0 + "," + goT1 + "]\n"},
		{"list wrong method", "DELETE", "/tunnels", 405, "-", ""},
		{"one", "GET", "/tunnel/" + udid1, 200, "application/json", goT1 + "\n"},
		{"undashed lower-case serial matches", "GET", "/tunnel/000080300000000000000001", 200, "application/json", goT1 + "\n"},
		{"unknown udid", "GET", "/tunnel/nope", 404, jsonErr, `{"error":"tunnel not found"}` + "\n"},
		{"missing udid", "GET", "/tunnel/", 400, jsonErr, `{"error":"missing udid"}` + "\n"},
		{"wrong method", "PUT", "/tunnel/" + udid1, 405, "-", ""},
		{"delete unknown", "DELETE", "/tunnel/nope", 404, jsonErr, `{"error":"tunnel not found"}` + "\n"},
		{"unknown path", "GET", "/nope", 404, jsonErr, `{"error":"page not found"}` + "\n"},
		{"shutdown", "GET", "/shutdown", 200, "text/plain; charset=utf-8", "shutting down in 1 second..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := serve(t, goios, sampleRegistry())
			do(t, srv, tt.method, tt.target, "").want(t, tt.code, tt.ctype, tt.body)
		})
	}
	t.Run("delete cancels by the handler's UDID", func(t *testing.T) {
		reg := sampleRegistry()
		srv, _ := serve(t, goios, reg)
		do(t, srv, "DELETE", "/tunnel/000080300000000000000000", "").want(t, 204, "-", "")
		if got := reg.Calls().Canceled; !slices.Equal(got, []string{udid0}) {
			t.Errorf("canceled %q, want [%s]", got, udid0)
		}
		do(t, srv, "GET", "/tunnels", "").want(t, 200, "application/json", "["+goT1+"]\n")
	})
	t.Run("not ready", func(t *testing.T) {
		reg := rsdapitest.New()
		reg.SetReady(false)
		srv, _ := serve(t, goios, reg)
		do(t, srv, "GET", "/ready", "").want(t, 503, "-", "")
		do(t, srv, "GET", "/tunnels", "").want(t, 200, "application/json", "[]\n")
	})
	t.Run("redirect to subtree", func(t *testing.T) {
		srv, _ := serve(t, goios, rsdapitest.New())
		r := do(t, srv, "GET", "/tunnel", "")
		if r.code != 301 || r.header.Get("Location") != "/tunnel/" {
			t.Errorf("got %d Location %q, want 301 /tunnel/", r.code, r.header.Get("Location"))
		}
	})
	t.Run("userspace tunnel", func(t *testing.T) {
		tu := rsdapitest.Sample(3)
		tu.Userspace, tu.UserspacePort = true, 60106
		tu.SerialNumber = "000080300000000000000003" // undashed, as a Linux usbmuxd reports
		srv, _ := serve(t, goios, rsdapitest.New(tu))
		do(t, srv, "GET", "/tunnel/00008030-0000000000000003", "").want(t, 200, "application/json",
			`{"address":"fd00::3:1","rsdPort":50003,"udid":"000080300000000000000003","userspaceTun":true,"userspaceTunPort":60106}`+"\n")
		// The client reads it back; an unknown device is ErrNoTunnel.
		c := &rsdapi.GoIOSClient{Addr: strings.TrimPrefix(srv.URL, "http://")}
		got, err := c.Tunnel(context.Background(), "00008030-0000000000000003")
		if err != nil || !got.Userspace || got.UserspacePort != 60106 || got.Address != "fd00::3:1" || got.RSDPort != 50003 {
			t.Errorf("GoIOSClient.Tunnel = %+v, %v", got, err)
		}
		if _, err := c.Tunnel(context.Background(), "nope"); !errors.Is(err, rsdapi.ErrNoTunnel) {
			t.Errorf("unknown device: %v", err)
		}
	})
	t.Run("serial falls back to UDID", func(t *testing.T) {
		tu := rsdapi.Tunnel{UDID: "WIFI-ONLY", Address: "fd01::1", RSDPort: 1}
		srv, _ := serve(t, goios, rsdapitest.New(tu))
		do(t, srv, "GET", "/tunnels", "").want(t, 200, "application/json",
			`[{"address":"fd01::1","rsdPort":1,"udid":"WIFI-ONLY","userspaceTun":false,"userspaceTunPort":0}]`+"\n")
	})
}
