package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
)

// One lockdown key for every test device: RSA generation is slow and the
// key's uniqueness is not what these tests are about.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rig is a usbmuxd socket with devices plugged into it.
type rig struct {
	srv    *usbmux.Server
	client *usbmux.Client
	path   string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir, err := os.MkdirTemp("", "sim-test-")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{srv: usbmux.NewServer(usbmux.ServerConfig{}), path: filepath.Join(dir, "usbmuxd")}
	ln, err := net.Listen("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(ln) }()
	t.Cleanup(func() {
		r.srv.Close()
		<-done
		os.RemoveAll(dir)
	})
	r.client = usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: r.path}})
	return r
}

// device starts a device on the rig with loopback RSD and network pairing.
func (r *rig) device(t *testing.T, cfg Config) *Device {
	t.Helper()
	if cfg.LockdownKey == nil {
		cfg.LockdownKey = testKey()
	}
	if cfg.Mux == nil {
		cfg.Mux = r.srv
	}
	if cfg.RSDAddr == "" {
		cfg.RSDAddr = "127.0.0.1:0"
	}
	if cfg.PairingAddr == "" {
		cfg.PairingAddr = "127.0.0.1:0"
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("closing the device: %v", err)
		}
	})
	return d
}

// usbDevice finds d in usbmuxd.
func (r *rig) usbDevice(t *testing.T, d *Device) (usbmux.DeviceEntry, bool) {
	t.Helper()
	list, err := r.client.ListDevices(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range list {
		if usbmux.SameUDID(u.UDID(), d.UDID()) {
			return u, true
		}
	}
	return usbmux.DeviceEntry{}, false
}

// pairLockdown pairs a new host with d over lockdown and saves the record
// in usbmuxd, as idevicepair does.
func (r *rig) pairLockdown(t *testing.T, d *Device) (*lockdown.PairRecord, error) {
	t.Helper()
	ctx := testCtx(t)
	u, ok := r.usbDevice(t, d)
	if !ok {
		t.Fatalf("%s not in usbmuxd", d.UDID())
	}
	lc, err := lockdown.DialUsbmux(ctx, r.client, u.DeviceID, lockdown.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	buid, err := r.client.ReadBUID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := lc.Pair(ctx, lockdown.PairConfig{SystemBUID: buid, PollInterval: 50 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.client.SavePairRecord(ctx, u.UDID(), u.DeviceID, b); err != nil {
		t.Fatal(err)
	}
	return rec, nil
}

// hostTunnel runs the host side of a tunnel on an established transport:
// CDTunnel, a userspace stack and the packet pump. The pump is closed at
// cleanup.
func hostTunnel(t *testing.T, ctx context.Context, conn net.Conn) (*utun.Netstack, tunnel.Params) {
	t.Helper()
	params, err := tunnel.ClientHandshake(ctx, conn, tunnel.StreamMTU)
	if err != nil {
		conn.Close()
		t.Fatalf("CDTunnel: %v", err)
	}
	ns, err := utun.NewNetstack(utun.NetstackConfig{Address: params.ClientPrefix(), MTU: params.MTU})
	if err != nil {
		t.Fatal(err)
	}
	pump, err := tunnel.NewPump(tunnel.PumpConfig{TUN: ns, Conn: tunnel.NewStreamConn(conn, params.MTU), MTU: params.MTU,
		Local: params.ClientAddress, Peer: params.ServerAddress})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pump.Close() })
	return ns, params
}

// coreDeviceProxy opens P1 to d through usbmuxd (pairing first if needed).
func (r *rig) coreDeviceProxy(t *testing.T, d *Device) (net.Conn, error) {
	t.Helper()
	u, ok := r.usbDevice(t, d)
	if !ok {
		t.Fatalf("%s not in usbmuxd", d.UDID())
	}
	conn, _, err := lockdown.OpenService(testCtx(t), r.client, u, lockdown.CoreDeviceProxy, lockdown.ClientConfig{})
	return conn, err
}

// trustedRSD reads the trusted RSD through a host stack.
func trustedRSD(t *testing.T, ctx context.Context, ns *utun.Netstack, p tunnel.Params, host xpc.UUID) *rsd.Client {
	t.Helper()
	nc, err := ns.DialContext(ctx, "tcp", joinHostPort(p.ServerAddress.String(), p.ServerRSDPort))
	if err != nil {
		t.Fatalf("dialing the trusted RSD: %v", err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: host})
	if err != nil {
		t.Fatalf("trusted RSD: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func joinHostPort(h string, p uint16) string {
	return net.JoinHostPort(h, itoa(int(p)))
}

func itoa(n int) string { return strconv.Itoa(n) }

// remoteTunnel pairs (if needed) and verifies a host with the device over
// dial, then opens a tunnel with createListener tcp and TLS-PSK on
// listenerHost; it returns the host stack inside the tunnel.
func remoteTunnel(t *testing.T, ctx context.Context, store pairing.RecordStore, dial func(ctx context.Context) (pairing.Transport, error), listenerHost string) (*utun.Netstack, tunnel.Params, error) {
	return remoteTunnelVia(t, ctx, store, dial, func(ctx context.Context, port int) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", net.JoinHostPort(listenerHost, itoa(port)))
	})
}

func remoteTunnelVia(t *testing.T, ctx context.Context, store pairing.RecordStore, dial func(ctx context.Context) (pairing.Transport, error), dialPort func(ctx context.Context, port int) (net.Conn, error)) (*utun.Netstack, tunnel.Params, error) {
	t.Helper()
	tc, err := remoteTLSPSK(t, ctx, store, dial, dialPort, nil)
	if err != nil {
		return nil, tunnel.Params{}, err
	}
	ns, p := hostTunnel(t, ctx, tc)
	return ns, p, nil
}

// remoteTLSPSK pairs (if needed) and verifies a host with the device over
// dial, asks for a TCP tunnel listener and returns the TLS-PSK connection
// to it, handshake done, the client offering suites (nil: tlspsk's
// default). Pairing and createListener errors are returned.
func remoteTLSPSK(t *testing.T, ctx context.Context, store pairing.RecordStore, dial func(ctx context.Context) (pairing.Transport, error), dialPort func(ctx context.Context, port int) (net.Conn, error), suites []uint16) (*tlspsk.Conn, error) {
	t.Helper()
	res, err := pairing.Pair(ctx, &pairing.PairConfig{Host: pairing.ClientConfig{HostName: "sim-test"}, Dial: dial, Store: store})
	if err != nil {
		return nil, err
	}
	rec, err := store.Load(res.ID)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := pairing.NewClient(tr, &pairing.ClientConfig{HostName: "sim-test"})
	t.Cleanup(func() { h.Close() })
	if _, err := h.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(ctx, pairing.Identity{Identifier: rec.HostIdentifier, PrivateKey: ed25519.NewKeyFromSeed(rec.PrivateKey)}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	l, err := h.CreateListener(ctx, pairing.ListenerRequest{Transport: pairing.TransportTCP, Key: h.SharedSecret()})
	if err != nil {
		return nil, err
	}
	nc, err := dialPort(ctx, l.Port)
	if err != nil {
		t.Fatal(err)
	}
	tc := tlspsk.Client(nc, &tlspsk.Config{PSK: h.SharedSecret(), CipherSuites: suites})
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS-PSK: %v", err)
	}
	return tc, nil
}

// xpcDial dials a RemoteXPC service (the tunnel service) at addr.
func xpcDial(addr string) func(ctx context.Context) (pairing.Transport, error) {
	return func(ctx context.Context) (pairing.Transport, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c, err := xpc.Client(ctx, nc, nil)
		if err != nil {
			return nil, err
		}
		return pairing.NewXPC(c), nil
	}
}

// rppDial dials network pairing at addr.
func rppDial(addr string) func(ctx context.Context) (pairing.Transport, error) {
	return func(ctx context.Context) (pairing.Transport, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return pairing.NewRPPairing(nc), nil
	}
}

func usbmuxClient(path string) *usbmux.Client {
	return usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: path}})
}
