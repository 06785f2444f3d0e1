package sim

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// TestQUIC: iOS 17.0–18.1 devices accept createListener with quic and
// carry the tunnel in QUIC datagrams; 18.2 refuses it. The host side is
// establish's P2 (an ncm sighting) in userspace mode.
func TestQUIC(t *testing.T) {
	forEachDeviceEnd(t, testQUIC)
}

func testQUIC(t *testing.T, end DeviceEnd) {
	testkit.CheckLeaks(t)
	for _, tt := range []struct {
		profile string
		ok      bool
	}{{"18.1", true}, {"18.2", false}} {
		if !tt.ok && end != DeviceEndNetstack {
			continue // 18.2's refusal happens before any device end (10 s of timeouts)
		}
		t.Run(tt.profile, func(t *testing.T) {
			r := newRig(t)
			d := r.device(t, Config{Profile: MustProfile(tt.profile), DeviceEnd: end})
			ctx := testCtx(t)
			// Pair first (Trust), over the tunnel service the untrusted
			// RSD lists.
			rsdAddr := d.Endpoints().UntrustedRSD
			host, _, _ := net.SplitHostPort(rsdAddr)
			nc, err := net.Dial("tcp", rsdAddr)
			if err != nil {
				t.Fatal(err)
			}
			c, err := rsd.NewClient(ctx, nc, nil)
			if err != nil {
				t.Fatal(err)
			}
			ts, _ := c.Handshake.Service(pairing.TunnelServiceName)
			c.Close()
			store := pairing.RecordStore{Dir: t.TempDir()}
			if _, err := pairing.Pair(ctx, &pairing.PairConfig{Host: pairing.ClientConfig{HostName: "sim-test"},
				Dial: xpcDial(joinHostPort(host, ts.Port)), Store: store}); err != nil {
				t.Fatal(err)
			}
			var ns *utun.Netstack
			tn, err := establish.Establish(ctx, discovery.Event{Source: discovery.SourceNCM, Addr: netip.MustParseAddrPort(rsdAddr)}, establish.Options{
				Protocol: establish.QUIC, Records: store, HostName: "sim-test",
				NewTUN: func(p tunnel.Params) (tun.Device, error) {
					var err error
					ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
					return ns, err
				},
			})
			if !tt.ok {
				if err == nil {
					tn.Close()
					t.Fatal("a QUIC tunnel came up on 18.2")
				}
				if !errors.Is(err, establish.ErrQUICUnsupported) {
					t.Errorf("QUIC on 18.2 failed with %v, want ErrQUICUnsupported", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("QUIC tunnel: %v", err)
			}
			defer tn.Close()
			if tn.Protocol != establish.QUIC {
				t.Errorf("protocol %s", tn.Protocol)
			}
			checkTrusted(t, ctx, d, ns, tn.Params)
		})
	}
}
