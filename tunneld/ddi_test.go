package tunneld_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunneld"
	"github.com/iosmux/iosmux/utun"
)

type appiumEntry struct {
	Services map[string]json.RawMessage `json:"services"`
}

func appiumServices(t *testing.T, r *rig, udid, method string) map[string]json.RawMessage {
	t.Helper()
	url, path := r.url(tunneld.APIAppium, "/remotexpc/tunnels/"+udid), ""
	if method == http.MethodPost {
		path = "/refresh-services"
	}
	req, _ := http.NewRequest(method, url+path, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e appiumEntry
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %v", method, url+path, resp.StatusCode, err)
	}
	return e.Services
}

// TestCatalogFollowsMount: a DDI mounted through tunneld's own tunnel
// (reached through its userspace proxy) appears in appium's catalog on
// refresh-services, without restarting anything.
func TestCatalogFollowsMount(t *testing.T) {
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), SocketPath: shortSocket(t),
		LockdownKey: lockdownKey(t), DeveloperMode: true, TSSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	dev := f.Devices()[0]
	r := daemon(t, f, nil)
	waitFor(t, "the tunnel", func() bool { return listed(t, r, dev.UDID()) })
	if _, ok := appiumServices(t, r, dev.UDID(), http.MethodGet)[reach.OpenStdioSocket.RSD]; ok {
		t.Fatal("DDI service in the catalog before the mount")
	}
	gt := goiosTunnels(t, r)[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o, err := reach.NewRSD(ctx, utun.PreambleDial(fmt.Sprintf("127.0.0.1:%d", gt.UserspaceTUNPort)),
		netip.AddrPortFrom(netip.MustParseAddr(gt.Address), uint16(gt.RsdPort)), reach.RSDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ddi.Open("../services/mounter/ddi/testdata/ddi_restore")
	if err != nil {
		t.Fatal(err)
	}
	res, err := mounter.Mount(ctx, o, mounter.MountConfig{Bundle: b, TSS: &tss.Client{URL: f.TSSURL()}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest != mounter.FromTSS || f.TSS().Requests() != 1 {
		t.Errorf("mount %+v, %d TSS requests", res, f.TSS().Requests())
	}
	if _, ok := appiumServices(t, r, dev.UDID(), http.MethodPost)[reach.OpenStdioSocket.RSD]; !ok {
		t.Error("refresh-services did not bring the DDI service")
	}
	if _, ok := appiumServices(t, r, dev.UDID(), http.MethodGet)[reach.OpenStdioSocket.RSD]; !ok {
		t.Error("the listing after refresh-services lacks the DDI service")
	}
}

// TestAdvertRefresh: with --advertise, refresh-services asks the advertised
// RSD to re-read the device (it only stamped the time before) and lists
// what it then reports.
func TestAdvertRefresh(t *testing.T) {
	f := fleet(t, 1, "")
	dev := f.Devices()[0]
	var refreshes atomic.Int32
	services := []rsdapi.Service{{Name: "com.example.before", Port: 1}}
	var catalog atomic.Pointer[[]rsdapi.Service]
	catalog.Store(&services)
	r := daemon(t, f, func(c *tunneld.Config) {
		c.Advertise = func(ctx context.Context, req tunneld.AdvertiseRequest) (tunneld.Advert, error) {
			return tunneld.Advert{RSD: netip.MustParseAddrPort("127.0.0.1:4242"),
				Services: func() []rsdapi.Service { return *catalog.Load() },
				Refresh: func(context.Context) error {
					refreshes.Add(1)
					after := []rsdapi.Service{{Name: reach.OpenStdioSocket.RSD, Port: 2}}
					catalog.Store(&after)
					return nil
				}}, nil
		}
	})
	waitFor(t, "the advertised tunnel", func() bool { return listed(t, r, dev.UDID()) })
	got := appiumServices(t, r, dev.UDID(), http.MethodPost)
	if _, ok := got[reach.OpenStdioSocket.RSD]; !ok || refreshes.Load() != 1 || len(got) != 1 {
		t.Errorf("after refresh-services: %v, %d refreshes", got, refreshes.Load())
	}
}
