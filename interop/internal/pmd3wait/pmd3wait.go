// Package pmd3wait is a test helper of the interop module: it waits until
// a tunneld's pymobiledevice3 API (GET /, docs/protocols/tunneld-api.md)
// lists a device and returns the device's RSD address from the listing.
package pmd3wait

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// RSD polls http://api/ every 20 ms until udid is listed, and fails t when
// ctx ends first or the listed address does not parse.
func RSD(t testing.TB, ctx context.Context, api, udid string) netip.AddrPort {
	t.Helper()
	for {
		resp, err := http.Get("http://" + api + "/")
		if err == nil {
			var m map[string][]struct {
				Address string `json:"tunnel-address"`
				Port    int    `json:"tunnel-port"`
			}
			err = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			if e := m[udid]; err == nil && len(e) > 0 {
				a, err := netip.ParseAddr(e[0].Address)
				if err != nil {
					t.Fatalf("listed address %q: %v", e[0].Address, err)
				}
				return netip.AddrPortFrom(a, uint16(e[0].Port))
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("tunneld never listed %s", udid)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
