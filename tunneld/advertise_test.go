package tunneld_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/tunneld"
	"github.com/iosmux/iosmux/xpc"
)

// advertiser is a Config.Advertise that records its requests and fails
// the first one.
type advertiser struct {
	at       netip.AddrPort
	services []rsdapi.Service

	mu   sync.Mutex
	reqs []tunneld.AdvertiseRequest
}

func (a *advertiser) advertise(ctx context.Context, r tunneld.AdvertiseRequest) (tunneld.Advert, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reqs = append(a.reqs, r)
	if len(a.reqs) == 1 {
		return tunneld.Advert{}, errors.New("not yet")
	}
	return tunneld.Advert{RSD: a.at, Services: func() []rsdapi.Service { return a.services }}, nil
}

func (a *advertiser) requests() []tunneld.AdvertiseRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]tunneld.AdvertiseRequest(nil), a.reqs...)
}

// TestAdvertise: with Config.Advertise every API lists the advert's
// address, port and services instead of the device's (never as a
// userspace tunnel), refresh-services answers from it, the request
// reaches the device's RSD through the tunnel, a failed Advertise keeps
// the tunnel unlisted and torn down until a retry succeeds, and Done
// closes when the tunnel ends.
func TestAdvertise(t *testing.T) {
	f := fleet(t, 1, "")
	dev := f.Devices()[0]
	adv := &advertiser{
		at:       netip.MustParseAddrPort("127.0.0.1:4242"),
		services: []rsdapi.Service{{Name: "com.example.forwarded", Port: 4243}},
	}
	r := daemon(t, f, func(c *tunneld.Config) { c.Advertise = adv.advertise })
	waitFor(t, "the advertised tunnel", func() bool { return listed(t, r, dev.UDID()) })

	reqs := adv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d Advertise calls before the tunnel was listed, want 2 (one failed)", len(reqs))
	}
	select {
	case <-reqs[0].Done:
	default:
		t.Error("the tunnel whose Advertise failed was not torn down")
	}
	ep := dev.Endpoints()
	req := reqs[1]
	if req.UDID != dev.UDID() || req.RSD.String() != net.JoinHostPort(ep.TunnelAddress, strconv.Itoa(int(ep.TrustedRSDPort))) {
		t.Errorf("request %s %v, device %s at [%s]:%d", req.UDID, req.RSD, dev.UDID(), ep.TunnelAddress, ep.TrustedRSDPort)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := req.Dial(ctx, "tcp", req.RSD.String())
	if err != nil {
		t.Fatalf("dial through the tunnel: %v", err)
	}
	c, err := rsd.NewClient(ctx, nc, nil)
	if err != nil {
		t.Fatalf("the device's RSD through AdvertiseRequest.Dial: %v", err)
	}
	if got := c.Handshake.Device().UDID; got != dev.UDID() {
		t.Errorf("RSD through the tunnel says %q", got)
	}
	c.Close()

	e := listing(t, r)[dev.UDID()][0]
	if e.Address != "127.0.0.1" || e.Port != 4242 || e.Interface != "usbmux-"+dev.UDID()+"-USB" {
		t.Errorf("pmd3 entry %+v, want the advert 127.0.0.1:4242 on the device's interface", e)
	}
	for _, gt := range goiosTunnels(t, r) {
		if gt.Address != "127.0.0.1" || gt.RsdPort != 4242 || gt.UserspaceTUN || gt.UserspaceTUNPort != 0 {
			t.Errorf("go-ios entry %+v, want the advert, not through the userspace proxy", gt)
		}
	}
	resp, err := http.Post(r.url(tunneld.APIAppium, "/remotexpc/tunnels/"+dev.UDID()+"/refresh-services"), "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var entry struct {
		Address  string                     `json:"address"`
		RSDPort  int                        `json:"rsdPort"`
		Services map[string]json.RawMessage `json:"services"`
	}
	err = json.NewDecoder(resp.Body).Decode(&entry)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("refresh-services: %d %v", resp.StatusCode, err)
	}
	if entry.Address != "127.0.0.1" || entry.RSDPort != 4242 || len(entry.Services) != 1 || string(entry.Services["com.example.forwarded"]) != `{"port":"4243"}` {
		t.Errorf("appium entry after refresh %+v", entry)
	}
	if n := len(adv.requests()); n != 2 {
		t.Errorf("refresh-services called Advertise (%d calls)", n)
	}

	if err := dev.Unplug(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-req.Done:
	case <-time.After(time.Minute):
		t.Fatal("Done not closed after the device left")
	}
}

// TestHostUUIDOnEverySession27: against an iOS 27.2 device, which closes
// every service port when a tunnel's RSD peer presents a UUID other than
// the last one, tunneld presents Config.HostUUID when it reads the catalog
// and on refresh-services, and a backend with the same UUID on the same
// tunnel leaves the ports alone.
func TestHostUUIDOnEverySession27(t *testing.T) {
	host, _ := xpc.ParseUUID("0d7c7c16-0f34-4f2a-9e5c-0b9e3c2d0001")
	other, _ := xpc.ParseUUID("0d7c7c16-0f34-4f2a-9e5c-0b9e3c2d0002")
	if host.IsZero() || other.IsZero() {
		t.Fatal("test UUIDs do not parse")
	}
	up := func(t *testing.T) (*rig, goiosTunnel, func() int64) {
		f := fleetOf(t, 1, "", "27.2")
		dev := f.Devices()[0]
		r := daemon(t, f, func(c *tunneld.Config) { c.HostUUID = host })
		waitFor(t, "the tunnel", func() bool { return len(goiosTunnels(t, r)) == 1 })
		return r, goiosTunnels(t, r)[0], func() int64 { return dev.Stats().Reattaches }
	}

	t.Run("catalog read presents an identity", func(t *testing.T) {
		_, gt, reattaches := up(t)
		// The device remembers the catalog session's UUID: another one
		// is a change. (Had tunneld presented none, there would be
		// nothing to change from.)
		rsdThroughProxyAs(t, gt, other)
		waitFor(t, "the device to re-attach", func() bool { return reattaches() == 1 })
	})

	t.Run("the same identity everywhere", func(t *testing.T) {
		r, gt, reattaches := up(t)
		rsdThroughProxyAs(t, gt, host)
		code, b := post(t, r.url(tunneld.APIAppium, "/remotexpc/tunnels/"+gt.UDID+"/refresh-services"))
		if code != 200 {
			t.Fatalf("refresh-services: %d %s", code, b)
		}
		b2, err := backend.New(backend.Config{Listen: "127.0.0.1:0", StateDir: t.TempDir(), HostUUID: host})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rsdAddr := netip.AddrPortFrom(netip.MustParseAddr(gt.Address), uint16(gt.RsdPort))
		if err := b2.Attach(ctx, backend.DeviceTunnel{RSD: rsdAddr, Dial: proxyDial(gt.UserspaceTUNPort)}); err != nil {
			t.Fatal(err)
		}
		// A client of the backend presenting its own identity never
		// reaches the device.
		nc, err := net.Dial("tcp", b2.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: other})
		if err != nil {
			t.Fatal(err)
		}
		if c.Handshake.Device().UDID != gt.UDID {
			t.Errorf("backend's Handshake is of %q", c.Handshake.Device().UDID)
		}
		c.Close()
		b2.Close()
		if n := reattaches(); n != 0 {
			t.Fatalf("%d re-attaches with one host identity on every session", n)
		}
		// The rig can see a change: another identity now is one.
		rsdThroughProxyAs(t, gt, other)
		waitFor(t, "the device to re-attach", func() bool { return reattaches() == 1 })
	})
}

func post(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := client.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b json.RawMessage
	json.NewDecoder(resp.Body).Decode(&b)
	return resp.StatusCode, b
}
