package tunnel

import (
	"errors"
	"flag"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// quicMiB caps the QUIC transfers, which are slower (one datagram per
// packet of at most ~1400 bytes through quic-go).
var quicMiB = flag.Int("quic-mib", 4, "MiB moved each way by the QUIC end-to-end tests (capped by -bulk-mib)")

// userspaceSide is the host without a TUN: a netstack and a forwarder on
// 127.0.0.1 per dial.
func userspaceSide(t testing.TB) hostSide {
	var ns *utun.Netstack
	return hostSide{
		newTUN: func(p Params) tun.Device {
			var err error
			ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
			if err != nil {
				t.Fatal(err)
			}
			return ns
		},
		dial: func(t testing.TB, tn *Tunnel, port uint16) net.Conn {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			fw := utun.NewForwarder(ln, netip.AddrPortFrom(tn.Params.ServerAddress, port), ns.DialContext, nil)
			t.Cleanup(func() { fw.Close() })
			c, err := net.Dial("tcp", fw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		gone: func(testing.TB, *Tunnel) bool { return true },
	}
}

func TestEstablishUserspace(t *testing.T) {
	for _, p := range []struct {
		name  string
		path  Path
		proto Protocol
	}{
		{"P1-CoreDeviceProxy", PathCoreDeviceProxy, TCP},
		{"P3-network-tcp", PathRemotePairing, TCP},
		{"P2-RSD-quic", PathRSD, QUIC},
	} {
		t.Run(p.name, func(t *testing.T) {
			testkit.CheckLeaks(t)
			f := newFixture(t, fixtureConfig{})
			runEstablished(t, f, userspaceSide(t), p.path, p.proto)
		})
	}
}

func TestEstablishErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fc    fixtureConfig
		path  Path
		proto Protocol
		is    error
		step  string
		text  string
	}{
		{"no CoreDeviceProxy before iOS 17.4", fixtureConfig{noCoreDeviceProxy: true}, PathCoreDeviceProxy, TCP, ErrNoCoreDeviceProxy, StepLockdown, "17.4"},
		{"not paired over RSD", fixtureConfig{unpaired: true}, PathRSD, TCP, ErrNotPaired, StepVerify, "iosmux pair"},
		{"not paired over the network", fixtureConfig{unpaired: true}, PathRemotePairing, TCP, ErrNotPaired, StepVerify, "iosmux pair"},
		{"QUIC refused from iOS 18.2", fixtureConfig{noQUIC: true}, PathRSD, QUIC, nil, StepCreateListener, "QUIC"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testkit.CheckLeaks(t)
			f := newFixture(t, tt.fc)
			opt := f.options(func(Params) tun.Device { t.Fatal("TUN made for a failed tunnel"); return nil }, tt.proto)
			tn, err := f.start(t, tt.path, opt)
			if err == nil {
				tn.Close()
				t.Fatal("tunnel established")
			}
			var e *Error
			if !errors.As(err, &e) || e.Step != tt.step || e.Device != fixtureUDID {
				t.Fatalf("error %v (%#v), want step %q naming %s", err, e, tt.step, fixtureUDID)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q does not mention %q", err, tt.text)
			}
		})
	}
}

func TestVersionGates(t *testing.T) {
	for _, tt := range []struct {
		v          string
		p1, quicOK bool
	}{
		{"16.7", false, false}, {"17.0", false, true}, {"17.3.1", false, true}, {"17.4", true, true},
		{"17.4.0", true, true}, {"18.1.1", true, true}, {"18.2", true, false}, {"26.0", true, false}, {"x", false, false},
	} {
		if got := SupportsCoreDeviceProxy(tt.v); got != tt.p1 {
			t.Errorf("SupportsCoreDeviceProxy(%q) = %v", tt.v, got)
		}
		if got := SupportsQUIC(tt.v); got != tt.quicOK {
			t.Errorf("SupportsQUIC(%q) = %v", tt.v, got)
		}
	}
}
