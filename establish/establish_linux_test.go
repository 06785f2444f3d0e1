package establish

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// Acceptance over every path with a real kernel TUN in a network namespace
// the test creates: the control connections and transports run on loopback
// in the test's namespace, the TUN lives in the new one, and a TCP
// connection from inside it to [device address]:port reaches the bulk
// service in the device's netstack. Sizes: -bulk-mib (1024 for the 1 GiB
// acceptance run).

func kernelSide(t testing.TB) hostSide {
	ns := testkit.NewNetNS(t)
	return hostSide{
		newTUN: func(p tunnel.Params) tun.Device {
			var dev tun.Device
			if err := ns.Do(func() (err error) {
				dev, err = utun.CreateKernel(utun.Config{Address: p.ClientPrefix(), Peer: p.ServerAddress, MTU: p.MTU})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return dev
		},
		dial: func(t testing.TB, tn *Tunnel, port uint16) net.Conn {
			var c net.Conn
			if err := ns.Do(func() (err error) {
				d := net.Dialer{Timeout: 10 * time.Second, Control: appDialControl}
				c, err = d.DialContext(context.Background(), "tcp6", netip.AddrPortFrom(tn.Params.ServerAddress, port).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return c
		},
		gone: func(t testing.TB, tn *Tunnel) bool {
			var exists bool
			ns.Do(func() error {
				_, err := net.InterfaceByName(tn.Interface)
				exists = err == nil
				return nil
			})
			return !exists
		},
	}
}

var establishPaths = []struct {
	name  string
	path  Method
	proto Protocol
}{
	{"P1-CoreDeviceProxy", MethodCoreDeviceProxy, TCP},
	{"P2-RSD-tcp", MethodRSD, TCP},
	{"P3-network-tcp", MethodRemotePairing, TCP},
	{"P2-RSD-quic", MethodRSD, QUIC},
	{"P3-network-quic", MethodRemotePairing, QUIC},
}

func TestEstablishKernel(t *testing.T) {
	for _, p := range establishPaths {
		t.Run(p.name, func(t *testing.T) {
			testkit.CheckLeaks(t)
			f := newFixture(t, fixtureConfig{})
			hs := kernelSide(t)
			runEstablished(t, f, hs, p.path, p.proto)
		})
	}
}

// TestEstablishFaultyDevice: a device that drops host→device packets above
// 8192 bytes under load and breaks on merged reads still gets the whole
// transfer over TLS-PSK and over P1's crypto/tls, whose batched writes
// keep one record per packet.
func TestEstablishFaultyDevice(t *testing.T) {
	for _, m := range []Method{MethodRemotePairing, MethodCoreDeviceProxy} {
		t.Run(string(m), func(t *testing.T) {
			testkit.CheckLeaks(t)
			f := newFixture(t, fixtureConfig{faults: tunnel.Faults{DropAbove: 8192, Boundary: tunnel.BoundaryBreak}})
			runEstablished(t, f, kernelSide(t), m, TCP)
		})
	}
}

// TestEstablishDeviceDies kills the device side of a TLS-PSK tunnel
// mid-transfer, with a reset or by going silent: the tunnel is reported
// dead within 5 s (the acceptance bound; the probe's own bound is checked
// exactly under synctest in probe tests), its TUN is gone, the control
// connection is closed and nothing leaks.
func TestEstablishDeviceDies(t *testing.T) {
	for _, how := range []string{"reset", "silent"} {
		t.Run(how, func(t *testing.T) {
			testkit.CheckLeaks(t)
			f := newFixture(t, fixtureConfig{})
			hs := kernelSide(t)
			tn, err := f.start(t, MethodRSD, f.options(hs.newTUN, TCP))
			if err != nil {
				t.Fatal(err)
			}
			defer tn.Close()
			c := hs.dial(t, tn, testRSDPort)
			defer c.Close()
			bulkDone := make(chan error, 1)
			go func() {
				_, err := testkit.Bulk(c, 1<<40, 1<<40)
				bulkDone <- err
			}()
			for tn.Stats().SentBytes < 4<<20 || tn.Stats().ReceivedBytes < 4<<20 {
				select {
				case err := <-bulkDone:
					t.Fatalf("transfer ended early: %v", err)
				case <-time.After(10 * time.Millisecond):
				}
			}
			f.mu.Lock()
			dc := f.tunnelConns[len(f.tunnelConns)-1]
			f.mu.Unlock()
			killed := time.Now()
			if how == "reset" {
				dc.Kill()
			} else {
				dc.Freeze()
			}
			select {
			case <-tn.Done():
			case <-time.After(30 * time.Second):
				t.Fatal("tunnel not reported dead after 30 s")
			}
			dead := time.Since(killed)
			t.Logf("reported dead after %v: %v", dead.Round(time.Millisecond), tn.Err())
			if dead > 5*time.Second {
				t.Errorf("reported dead after %v, want within 5 s", dead)
			}
			if how == "silent" && !errors.Is(tn.Err(), tunnel.ErrDead) {
				t.Errorf("Err = %v, want ErrDead", tn.Err())
			}
			if !hs.gone(t, tn) {
				t.Errorf("TUN %s still exists", tn.Interface)
			}
			c.Close()
			<-bulkDone
			dc.Close()
		})
	}
}

// TestEstablishQUICDeviceCloses: the device ends a QUIC tunnel mid-transfer
// (CONNECTION_CLOSE): the host tunnel ends at once, its TUN goes and
// nothing leaks.
func TestEstablishQUICDeviceCloses(t *testing.T) {
	testkit.CheckLeaks(t)
	f := newFixture(t, fixtureConfig{})
	hs := kernelSide(t)
	tn, err := f.start(t, MethodRSD, f.options(hs.newTUN, QUIC))
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	c := hs.dial(t, tn, testRSDPort)
	defer c.Close()
	bulkDone := make(chan error, 1)
	go func() {
		_, err := testkit.Bulk(c, 1<<40, 1<<40)
		bulkDone <- err
	}()
	for tn.Stats().SentBytes < 1<<20 {
		select {
		case err := <-bulkDone:
			t.Fatalf("transfer ended early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	f.ep.Close()
	select {
	case <-tn.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("tunnel not ended 30 s after the device closed it")
	}
	t.Logf("ended: %v", tn.Err())
	// A local Close reports exactly net.ErrClosed; this must be the
	// transport's own error.
	if tn.Err() == nil || tn.Err() == net.ErrClosed {
		t.Errorf("Err = %v, want the transport's error", tn.Err())
	}
	if !hs.gone(t, tn) {
		t.Errorf("TUN %s still exists", tn.Interface)
	}
	c.Close()
	<-bulkDone
}
