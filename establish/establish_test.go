package establish

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// quicMiB caps the QUIC transfers, which are slower (one datagram per
// packet of at most ~1400 bytes through quic-go).
var quicMiB = flag.Int("quic-mib", 4, "MiB moved each way by the QUIC end-to-end tests (capped by -bulk-mib)")

// hostSide is where the host's tunnel end lives and how a test reaches a
// device port through it.
type hostSide struct {
	newTUN func(tunnel.Params) tun.Device
	dial   func(t testing.TB, tn *Tunnel, port uint16) net.Conn
	// gone reports whether the TUN interface has disappeared.
	gone func(t testing.TB, tn *Tunnel) bool
}

// appDialControl, when set, prepares the application's socket that
// hostSide.dial makes before it connects (BenchmarkTLSPSKSplit's
// -split-app-cc).
var appDialControl func(network, address string, c syscall.RawConn) error

// userspaceSide is the host without a TUN: a netstack and a forwarder on
// 127.0.0.1 per dial.
func userspaceSide(t testing.TB) hostSide {
	var ns *utun.Netstack
	return hostSide{
		newTUN: func(p tunnel.Params) tun.Device {
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
			d := net.Dialer{Control: appDialControl}
			c, err := d.Dial("tcp", fw.Addr().String())
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
		path  Method
		proto Protocol
	}{
		{"P1-CoreDeviceProxy", MethodCoreDeviceProxy, TCP},
		{"P3-network-tcp", MethodRemotePairing, TCP},
		{"P2-RSD-quic", MethodRSD, QUIC},
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
		path  Method
		proto Protocol
		is    error
		step  string
		text  string
	}{
		{"no CoreDeviceProxy before iOS 17.4", fixtureConfig{noCoreDeviceProxy: true}, MethodCoreDeviceProxy, TCP, ErrNoCoreDeviceProxy, StepLockdown, "17.4"},
		{"not paired over RSD", fixtureConfig{unpaired: true}, MethodRSD, TCP, ErrNotPaired, StepVerify, "iosmux pair"},
		{"not paired over the network", fixtureConfig{unpaired: true}, MethodRemotePairing, TCP, ErrNotPaired, StepVerify, "iosmux pair"},
		{"QUIC refused from iOS 18.2", fixtureConfig{noQUIC: true}, MethodRSD, QUIC, nil, StepCreateListener, "QUIC"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testkit.CheckLeaks(t)
			f := newFixture(t, tt.fc)
			opt := f.options(func(tunnel.Params) tun.Device { t.Fatal("TUN made for a failed tunnel"); return nil }, tt.proto)
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
		if got := supportsCoreDeviceProxy(tt.v); got != tt.p1 {
			t.Errorf("supportsCoreDeviceProxy(%q) = %v", tt.v, got)
		}
		if got := SupportsQUIC(tt.v); got != tt.quicOK {
			t.Errorf("SupportsQUIC(%q) = %v", tt.v, got)
		}
	}
}

// runEstablished establishes path, checks what the Tunnel reports, moves
// the bulk transfer both ways, closes it and checks the TUN is gone.
func runEstablished(t *testing.T, f *fixture, hs hostSide, path Method, proto Protocol) *Tunnel {
	tn, err := f.start(t, path, f.options(hs.newTUN, proto))
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	if tn.Identifier != fixtureUDID || tn.Method != path || tn.Protocol != proto || tn.Interface == "" {
		t.Fatalf("tunnel reports %s %s %s %q", tn.Identifier, tn.Method, tn.Protocol, tn.Interface)
	}
	if tn.Params.ServerAddress != f.dev.Address() || tn.Params.ServerRSDPort != testRSDPort {
		t.Fatalf("params %+v, device %v", tn.Params, f.dev.Address())
	}
	size := int64(*bulkMiB) << 20
	if proto == QUIC {
		size = min(size, int64(*quicMiB)<<20)
	}
	c := hs.dial(t, tn, testRSDPort)
	start := time.Now()
	// A tunnel that ends mid-transfer (a device that breaks on a merged
	// record, say) leaves the application's TCP connection waiting for
	// retransmission timeouts; fail at once with the tunnel's error instead.
	bulkErr := make(chan error, 1)
	go func() {
		_, err := testkit.Bulk(c, size, size)
		bulkErr <- err
	}()
	select {
	case err := <-bulkErr:
		if err != nil {
			t.Fatalf("bulk: %v (stats %+v)", err, tn.Stats())
		}
	case <-tn.Done():
		c.Close()
		<-bulkErr
		t.Fatalf("tunnel ended during the transfer: %v (stats %+v)", tn.Err(), tn.Stats())
	}
	d := time.Since(start)
	c.Close()
	t.Logf("%s/%s: %d MiB each way in %v (%.0f MB/s total), MTU %d", path, proto, size>>20, d.Round(time.Millisecond),
		float64(2*size)/d.Seconds()/1e6, tn.Params.MTU)
	s := deviceSession(t, f, tn.Params.ClientAddress).Stats()
	if s.DroppedAbove != 0 || s.BoundaryViolations != 0 {
		t.Fatalf("device dropped %d oversize packets and saw %d merged reads", s.DroppedAbove, s.BoundaryViolations)
	}
	tn.Close()
	if !errors.Is(tn.Err(), net.ErrClosed) {
		t.Fatalf("Err after Close = %v", tn.Err())
	}
	if !hs.gone(t, tn) {
		t.Fatalf("TUN %s still exists after Close", tn.Interface)
	}
	return tn
}

// TestEstablishFromEvents: each discovery sighting leads to its path.
func TestEstablishFromEvents(t *testing.T) {
	testkit.CheckLeaks(t)
	f := newFixture(t, fixtureConfig{})
	hs := userspaceSide(t)
	for _, tt := range []struct {
		ev   discovery.Event
		path Method
	}{
		{discovery.Event{Kind: discovery.Attached, Source: discovery.SourceUsbmux, UDID: f.muxDev.SerialNumber, DeviceID: f.muxDev.DeviceID, ConnectionType: "USB"}, MethodCoreDeviceProxy},
		{discovery.Event{Kind: discovery.Attached, Source: discovery.SourceNCM, Addr: netip.MustParseAddrPort(f.rsdAddr)}, MethodRSD},
		{discovery.Event{Kind: discovery.Attached, Source: discovery.SourceRemotePairing, Addr: netip.MustParseAddrPort(f.rpAddr)}, MethodRemotePairing},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		opt := f.options(hs.newTUN, TCP)
		opt.Usbmux = f.mux
		tn, err := Establish(ctx, tt.ev, opt)
		cancel()
		if err != nil {
			t.Fatalf("%v: %v", tt.ev, err)
		}
		if tn.Method != tt.path || tn.Identifier != fixtureUDID {
			t.Errorf("%v: tunnel %s to %s", tt.ev, tn.Method, tn.Identifier)
		}
		c := hs.dial(t, tn, testRSDPort)
		if _, err := testkit.Bulk(c, 1<<20, 1<<20); err != nil {
			t.Errorf("%v: bulk: %v", tt.ev, err)
		}
		c.Close()
		tn.Close()
	}
	_, err := Establish(context.Background(), discovery.Event{Source: "bluetooth", UDID: fixtureUDID}, Options{Usbmux: f.mux})
	if !errors.Is(err, ErrUnsupportedPath) {
		t.Fatalf("bluetooth sighting: %v", err)
	}
}
