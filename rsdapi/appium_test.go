package rsdapi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
)

// Entries of rsdapitest.Sample(0) and (1): Epoch = 1735689600000 ms.
const (
	apE0 = `{"udid":"00008030-0000000000000000","deviceId":1,"address":"fd00::0:1","rsdPort":50000,` +
		`"services":{"com.apple.mobile.lockdown.remote.trusted":{"port":"52288"}},"catalogUpdatedAt":1735689610000,` +
		`"connectionType":"USB","productId":4776,"createdAt":1735689600000,"lastUpdated":1735689610000}`
	apE1 = `{"udid":"00008030-0000000000000001","deviceId":2,"address":"fd00::1:1","rsdPort":50001,` +
		`"services":{"com.apple.mobile.lockdown.remote.trusted":{"port":"52288"}},"catalogUpdatedAt":1735689610000,` +
		`"connectionType":"USB","productId":4776,"createdAt":1735689600000,"lastUpdated":1735689610000}`
	apMeta2 = `{"lastUpdated":"2025-01-01T00:00:20.000Z","totalTunnels":2,"activeTunnels":2}`
	base    = "/remotexpc/tunnels"
)

func withStatus(status, entry string) string { return `{"status":"` + status + `",` + entry[1:] }

func TestAppium(t *testing.T) {
	tests := []struct {
		name, method, target, body string
		code                       int
		want                       string
	}{
		{"list", "GET", base, "", 200, `{"status":"OK","tunnels":{"00008030-0000000000000000":` + apE0 + `,"00008030-0000000000000001":` + apE1 + `},"metadata":` + apMeta2 + `}`},
		{"list, trailing slash, any case", "GET", "/RemoteXPC/Tunnels/", "", 200, `{"status":"OK","tunnels":{"00008030-0000000000000000":` + apE0 + `,"00008030-0000000000000001":` + apE1 + `},"metadata":` + apMeta2 + `}`},
		{"metadata", "GET", base + "/metadata", "", 200, withStatus("OK", apMeta2)},
		{"by udid", "GET", base + "/" + udid1, "", 200, withStatus("OK", apE1)},
		{"by undashed udid", "GET", base + "/000080300000000000000001", "", 200, withStatus("OK", apE1)},
		{"by udid, waitMs=0", "GET", base + "/" + udid1 + "?waitMs=0", "", 200, withStatus("OK", apE1)},
		{"unknown udid", "GET", base + "/nope", "", 404, `{"status":"Not Found","error":"Tunnel not found for UDID: nope"}`},
		{"bad waitMs", "GET", base + "/nope?waitMs=abc", "", 400, `{"status":"Bad Request","error":"Invalid waitMs query parameter"}`},
		{"negative waitMs", "GET", base + "/nope?waitMs=-5", "", 400, `{"status":"Bad Request","error":"Invalid waitMs query parameter"}`},
		{"waitMs too large", "GET", base + "/nope?waitMs=60001", "", 400, `{"status":"Bad Request","error":"Invalid waitMs query parameter"}`},
		{"waitMs elapses", "GET", base + "/nope?waitMs=1abc", "", 408, `{"status":"NOT_READY"}`},
		{"by device id", "GET", base + "/device/2", "", 200, withStatus("OK", apE1)},
		{"by device id, lenient", "GET", base + "/device/%20%2B02x", "", 200, withStatus("OK", apE1)},
		{"bad device id", "GET", base + "/device/x", "", 400, `{"status":"Bad Request","error":"Invalid device ID"}`},
		{"unknown device id", "GET", base + "/device/0099", "", 404, `{"status":"Not Found","error":"Tunnel not found for device ID: 99"}`},
		{"refresh not configured", "POST", base + "/" + udid0 + "/refresh-services", "", 503, `{"status":"Service Unavailable","error":"Service catalog refresh is not configured"}`},
		{"refresh unknown", "POST", base + "/nope/refresh-services", "", 404, `{"status":"Not Found","error":"Tunnel not found for UDID: nope"}`},
		{"delete is not routed", "DELETE", base + "/" + udid0, "", 404, `{"status":"Not Found","error":"Not found"}`},
		{"other path", "GET", "/remotexpc/tunnelsX", "", 404, `{"status":"Not Found","error":"Not found"}`},
		{"put malformed", "PUT", base + "/X", "{", 400, `{"status":"Bad Request","error":"Malformed JSON in request body"}`},
		{"put not object", "PUT", base + "/X", "5", 400, `{"status":"Bad Request","error":"Invalid tunnel data"}`},
		{"put null", "PUT", base + "/X", "null", 400, `{"status":"Bad Request","error":"Invalid tunnel data"}`},
		{"put array", "PUT", base + "/X", "[]", 400, `{"status":"Bad Request","error":"UDID mismatch between path and body"}`},
		{"put mismatch", "PUT", base + "/X", `{"udid":"Y"}`, 400, `{"status":"Bad Request","error":"UDID mismatch between path and body"}`},
		{"put metadata is not a udid", "PUT", base + "/metadata", `{"udid":"metadata"}`, 404, `{"status":"Not Found","error":"Not found"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := serve(t, appium, sampleRegistry())
			do(t, srv, tt.method, tt.target, tt.body).want(t, tt.code, "application/json", tt.want)
		})
	}
}

func TestAppiumPut(t *testing.T) {
	srv, _ := serve(t, appium, rsdapitest.New(rsdapitest.Sample(0)))
	entry := `{"udid":"X","status":"custom","deviceId":9,"address":"fd09::1","rsdPort":7,"lastUpdated":1,"services":{}}`
	stored := `{"udid":"X","status":"custom","deviceId":9,"address":"fd09::1","rsdPort":7,"lastUpdated":1735689620000,"services":{}}`
	do(t, srv, "PUT", base+"/X", entry).want(t, 200, "application/json", `{"status":"OK","success":true,"tunnel":`+stored+`}`)
	// Not ready (empty services): not served by UDID, but listed and found
	// by device id; its own "status" key overrides the reason phrase.
	do(t, srv, "GET", base+"/X", "").want(t, 404, "application/json", `{"status":"Not Found","error":"Tunnel not found for UDID: X"}`)
	do(t, srv, "GET", base+"/device/9", "").want(t, 200, "application/json",
		`{"status":"custom","udid":"X","deviceId":9,"address":"fd09::1","rsdPort":7,"lastUpdated":1735689620000,"services":{}}`)
	do(t, srv, "GET", base, "").want(t, 200, "application/json",
		`{"status":"OK","tunnels":{"00008030-0000000000000000":`+apE0+`,"X":`+stored+`},"metadata":{"lastUpdated":"2025-01-01T00:00:20.000Z","totalTunnels":2,"activeTunnels":2}}`)
	// A stored entry never shadows a live tunnel.
	do(t, srv, "PUT", base+"/"+udid0, `{"udid":"`+udid0+`","address":"bogus"}`)
	do(t, srv, "GET", base+"/"+udid0, "").want(t, 200, "application/json", withStatus("OK", apE0))
}

func TestAppiumLongPoll(t *testing.T) {
	reg := rsdapitest.New()
	srv, s := serve(t, appium, reg)
	got := make(chan reply, 1)
	go func() { got <- doNoFatal(srv.URL + base + "/" + udid0 + "?waitMs=60000") }()
	// Not ready yet: a tunnel without services, then with them. Notify
	// repeatedly until the poll returns, so the test does not depend on
	// when the request arrives.
	bare := rsdapitest.Sample(0)
	bare.Services = nil
	reg.Set(bare)
	s.Notify()
	reg.Set(rsdapitest.Sample(0))
	var r reply
	for done := false; !done; {
		s.Notify()
		select {
		case r = <-got:
			done = true
		case <-time.After(10 * time.Millisecond):
		}
	}
	r.want(t, 200, "application/json", withStatus("OK", apE0))
}

func TestAppiumRefresh(t *testing.T) {
	reg := sampleRegistry()
	reg.Refresh = func(_ context.Context, udid string) (rsdapi.Tunnel, error) {
		if udid != udid0 {
			return rsdapi.Tunnel{}, errors.New("unexpected udid " + udid)
		}
		tu := rsdapitest.Sample(0)
		tu.Services = append(tu.Services, rsdapi.Service{Name: "com.apple.instruments.dtservicehub", Port: 53000})
		tu.CatalogAt = fixedNow
		return tu, nil
	}
	srv, _ := serve(t, appium, reg.Refresher())
	want := `{"status":"OK","udid":"00008030-0000000000000000","deviceId":1,"address":"fd00::0:1","rsdPort":50000,` +
		`"services":{"com.apple.mobile.lockdown.remote.trusted":{"port":"52288"},"com.apple.instruments.dtservicehub":{"port":"53000"}},` +
		`"catalogUpdatedAt":1735689620000,"connectionType":"USB","productId":4776,"createdAt":1735689600000,"lastUpdated":1735689610000}`
	do(t, srv, "POST", base+"/000080300000000000000000/refresh-services", "").want(t, 200, "application/json", want)
	do(t, srv, "POST", base+"/"+udid1+"/refresh-services", "").want(t, 500, "application/json", `{"status":"Internal Server Error","error":"Failed to refresh service catalog"}`)
}
