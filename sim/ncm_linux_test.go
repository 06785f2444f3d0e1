package sim

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/discovery/mdns"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// TestNCM: the device's USB-NCM and Wi-Fi links appear in a host namespace
// (the test's own, so nothing touches this machine's interfaces); mDNS
// finds _remoted._tcp and _remotepairing._tcp there, RSD answers on port
// 58783 of the device's link-local address, RemotePairing over the tunnel
// service and over RPPairing both reach a tunnel, and unplugging removes
// the USB link. Needs root, as CI runs.
func TestNCM(t *testing.T) {
	testkit.CheckLeaks(t)
	host, err := newNetNS()
	if err != nil {
		t.Fatalf("needs root for network namespaces: %v", err)
	}
	defer host.Close()
	if err := host.ip(nil, "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	d := r.device(t, Config{Index: 7, NCM: &NCMConfig{HostNetNS: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), host.File().Fd()), WiFi: true}})
	ctx := testCtx(t)
	ep := d.Endpoints()
	if ep.NCM == nil || ep.NCM.HostInterface != "simncm7" || ep.NCM.WiFiInterface != "simwlan7" {
		t.Fatalf("endpoints %+v", ep.NCM)
	}

	browse := func(ifname, service string) []mdns.Instance {
		var got []mdns.Instance
		if err := host.Do(func() (err error) {
			got, err = mdns.Browse(ctx, mdns.BrowseConfig{Interface: ifname, Service: service, Timeout: 3 * time.Second, MaxInstances: 1})
			return err
		}); err != nil {
			t.Fatalf("browse %s on %s: %v", service, ifname, err)
		}
		return got
	}
	// Dial inside the host namespace, with the zone as an index looked up
	// there (the net package caches zone names process-wide).
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var nc net.Conn
		err := host.Do(func() error {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return err
			}
			if z := ap.Addr().Zone(); z != "" {
				ifi, err := net.InterfaceByName(z)
				if err != nil {
					return err
				}
				ap = netip.AddrPortFrom(ap.Addr().WithZone(strconv.Itoa(ifi.Index)), ap.Port())
			}
			var dl net.Dialer
			nc, err = dl.DialContext(ctx, "tcp", ap.String())
			return err
		})
		return nc, err
	}

	// USB-NCM: _remoted._tcp → RSD on 58783.
	got := browse("simncm7", mdns.ServiceRemoted)
	if len(got) != 1 || got[0].Port != RSDPort || len(got[0].Addrs) == 0 {
		t.Fatalf("_remoted._tcp browse: %+v", got)
	}
	rsdAddr := net.JoinHostPort(got[0].Addrs[0].String(), fmt.Sprint(got[0].Port))
	if rsdAddr != ep.NCM.UntrustedRSD {
		t.Errorf("browsed %s, endpoints say %s", rsdAddr, ep.NCM.UntrustedRSD)
	}
	nc, err := dial(ctx, rsdAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rsd.NewClient(ctx, nc, nil)
	if err != nil {
		t.Fatalf("RSD over NCM: %v", err)
	}
	defer c.Close()
	if c.Handshake.Device().UDID != d.UDID() {
		t.Errorf("RSD UDID %s", c.Handshake.Device().UDID)
	}
	ts, _ := c.Handshake.Service(pairing.TunnelServiceName)
	devHost := got[0].Addrs[0].String()
	store := pairing.RecordStore{Dir: t.TempDir()}
	xdial := func(ctx context.Context) (pairing.Transport, error) {
		nc, err := dial(ctx, net.JoinHostPort(devHost, fmt.Sprint(ts.Port)))
		if err != nil {
			return nil, err
		}
		xc, err := xpc.Client(ctx, nc, nil)
		if err != nil {
			return nil, err
		}
		return pairing.NewXPC(xc), nil
	}
	ns, p, err := remoteTunnelVia(t, ctx, store, xdial, func(ctx context.Context, port int) (net.Conn, error) {
		return dial(ctx, net.JoinHostPort(devHost, fmt.Sprint(port)))
	})
	if err != nil {
		t.Fatal(err)
	}
	checkTrusted(t, ctx, d, ns, p)

	// Wi-Fi: _remotepairing._tcp with the pairing identifier and its authTag.
	wifi := browse("simwlan7", mdns.ServiceRemotePairing)
	if len(wifi) != 1 || len(wifi[0].Addrs) == 0 {
		t.Fatalf("_remotepairing._tcp browse: %+v", wifi)
	}
	txt := wifi[0].TXT()
	tag, _ := discovery.RemotePairingAuthTag(d.Identity().AltIRK, d.Identity().PairingID)
	if txt["identifier"] != d.Identity().PairingID || txt["authTag"] != tag || txt["model"] != d.Identity().ProductType {
		t.Errorf("TXT %v", txt)
	}
	wifiAddr := net.JoinHostPort(wifi[0].Addrs[0].String(), fmt.Sprint(wifi[0].Port))
	res, err := pairing.Pair(ctx, &pairing.PairConfig{Host: pairing.ClientConfig{HostName: "sim-test"}, Store: store,
		Dial: func(ctx context.Context) (pairing.Transport, error) {
			nc, err := dial(ctx, wifiAddr)
			if err != nil {
				return nil, err
			}
			return pairing.NewRPPairing(nc), nil
		}})
	if err != nil || !res.AlreadyPaired {
		t.Errorf("verify over Wi-Fi with the record from USB: %+v, %v", res, err)
	}

	// Unplug: the USB link leaves the host; Wi-Fi stays.
	d.Unplug()
	if err := host.Do(func() error { _, err := net.InterfaceByName("simncm7"); return err }); err == nil {
		t.Error("simncm7 still exists after unplug")
	}
	if err := host.Do(func() error { _, err := net.InterfaceByName("simwlan7"); return err }); err != nil {
		t.Errorf("Wi-Fi link gone after unplug: %v", err)
	}
	d.Replug()
	if got := browse("simncm7", mdns.ServiceRemoted); len(got) != 1 {
		t.Errorf("after replug: %+v", got)
	}
}
