package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
)

// TestUsbmuxLockdownP1 walks the USB path: usbmuxd lists the device,
// lockdown pairs and serves values over TLS, CoreDeviceProxy carries a
// tunnel, and inside it the trusted RSD, the lockdown shim and the byte
// services answer.
func TestUsbmuxLockdownP1(t *testing.T) {
	forEachDeviceEnd(t, testUsbmuxLockdownP1)
}

func testUsbmuxLockdownP1(t *testing.T, end DeviceEnd) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Index: 3, Profile: MustProfile("17.4"), DeviceEnd: end})
	ctx := testCtx(t)

	u, ok := r.usbDevice(t, d)
	if !ok {
		t.Fatal("device not listed by usbmuxd")
	}
	if u.SerialNumber != d.UDID() || u.ConnectionType != usbmux.ConnectionUSB {
		t.Errorf("usbmuxd entry %+v", u)
	}
	rec, err := r.pairLockdown(t, d)
	if err != nil {
		t.Fatalf("lockdown Pair: %v", err)
	}
	lc, err := lockdown.DialUsbmux(ctx, r.client, u.DeviceID, lockdown.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	if s, err := lc.StartSession(ctx, rec); err != nil || !s.TLS {
		t.Fatalf("StartSession = %+v, %v", s, err)
	}
	id := d.Identity()
	for k, want := range map[string]any{"UniqueDeviceID": id.UDID, "ProductVersion": "17.4", "BuildVersion": "21E219",
		"SerialNumber": id.SerialNumber, "DeviceName": id.DeviceName, "ProductType": id.ProductType, "UniqueChipID": id.ECID} {
		if v, err := lc.GetValue(ctx, "", k); err != nil || v != want {
			t.Errorf("GetValue %s = %v, %v; want %v", k, v, err, want)
		}
	}
	lc.Close()

	conn, err := r.coreDeviceProxy(t, d)
	if err != nil {
		t.Fatalf("CoreDeviceProxy: %v", err)
	}
	ns, p := hostTunnel(t, ctx, conn)
	ep := d.Endpoints()
	if p.ServerAddress.String() != ep.TunnelAddress || p.ServerRSDPort != ep.TrustedRSDPort {
		t.Errorf("tunnel params %+v, endpoints %+v", p, ep)
	}
	checkTrusted(t, ctx, d, ns, p)
}

// checkTrusted exercises the trusted RSD and the services inside a tunnel.
func checkTrusted(t *testing.T, ctx context.Context, d *Device, ns *utun.Netstack, p tunnel.Params) {
	t.Helper()
	c := trustedRSD(t, ctx, ns, p, xpc.UUID{})
	dev := c.Handshake.Device()
	id := d.Identity()
	if dev.UDID != id.UDID || dev.ProductType != id.ProductType || dev.OSVersion != d.Profile().OSVersion || dev.UniqueChipID != int64(id.ECID) {
		t.Errorf("trusted RSD device %+v", dev)
	}
	if c.Handshake.MessagingProtocolVersion != d.Profile().MessagingProtocolVersion {
		t.Errorf("MessagingProtocolVersion %d", c.Handshake.MessagingProtocolVersion)
	}
	if want, _ := ParseDeviceEnd(string(d.cfg.DeviceEnd)); d.Endpoints().DeviceEnd != string(want) {
		t.Errorf("endpoints report device end %q, want %q", d.Endpoints().DeviceEnd, want)
	}
	// Every listed service takes a connection on either device end: the
	// device never lists a service it does not serve.
	if len(c.Handshake.Services) < 10 {
		t.Errorf("trusted RSD lists %d services", len(c.Handshake.Services))
	}
	for _, s := range c.Handshake.Services {
		nc, err := ns.DialContext(ctx, "tcp", joinHostPort(p.ServerAddress.String(), s.Port))
		if err != nil {
			t.Errorf("%s end: listed %s on port %d does not answer: %v", d.Endpoints().DeviceEnd, s.Name, s.Port, err)
			continue
		}
		nc.Close()
	}
	dial := func(name string) net.Conn {
		s, ok := c.Handshake.Service(name)
		if !ok {
			t.Fatalf("trusted RSD lacks %s", name)
		}
		nc, err := ns.DialContext(ctx, "tcp", joinHostPort(p.ServerAddress.String(), s.Port))
		if err != nil {
			t.Fatalf("dialing %s: %v", name, err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		return nc
	}

	// Lockdown over RSD: RSDCheckin, QueryType, GetValue.
	sc, err := lockdown.ShimClient(ctx, dial(LockdownTrusted), LockdownTrusted, "sim-test", nil)
	if err != nil {
		t.Fatalf("RSDCheckin: %v", err)
	}
	var reply map[string]any
	if err := sc.Send(ctx, map[string]any{"Label": "sim-test", "Request": "GetValue", "Key": "SerialNumber"}); err != nil {
		t.Fatal(err)
	}
	if err := sc.Receive(ctx, &reply); err != nil || reply["Value"] != id.SerialNumber {
		t.Errorf("shim GetValue SerialNumber = %v, %v", reply, err)
	}
	if err := sc.Send(ctx, map[string]any{"Request": "GetValue"}); err != nil {
		t.Fatal(err)
	}
	reply = nil
	if err := sc.Receive(ctx, &reply); err != nil {
		t.Fatal(err)
	}
	if all, _ := reply["Value"].(map[string]any); all["UniqueDeviceID"] != id.UDID || all["ProductVersion"] != d.Profile().OSVersion {
		t.Errorf("shim GetValue (all) = %v", reply)
	}

	// Echo.
	e := dial(EchoService)
	msg := bytes.Repeat([]byte("echo!"), 20000)
	go e.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(e, got); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("echo: %v (equal %v)", err, bytes.Equal(got, msg))
	}

	// Source: N bytes of SourceStream.
	src := dial(SourceService)
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], 1<<20)
	src.Write(hdr[:])
	gotSrc, err := io.ReadAll(src)
	want := make([]byte, 1<<20)
	io.ReadFull(SourceStream(), want)
	if err != nil || !bytes.Equal(gotSrc, want) {
		t.Errorf("source: %d bytes, %v, equal %v", len(gotSrc), err, bytes.Equal(gotSrc, want))
	}

	// Sink: count and hash after the host's half-close.
	sink := dial(SinkService)
	payload := bytes.Repeat([]byte{0xA5, 0x5A, 0x00}, 300000)
	if _, err := sink.Write(payload); err != nil {
		t.Fatal(err)
	}
	if cw, ok := sink.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		t.Fatalf("%T cannot half-close", sink)
	}
	var out [40]byte
	if _, err := io.ReadFull(sink, out[:]); err != nil {
		t.Fatalf("sink reply: %v", err)
	}
	sum := sha256.Sum256(payload)
	if binary.BigEndian.Uint64(out[:8]) != uint64(len(payload)) || !bytes.Equal(out[8:], sum[:]) {
		t.Errorf("sink counted %d bytes, hash match %v", binary.BigEndian.Uint64(out[:8]), bytes.Equal(out[8:], sum[:]))
	}
}

// TestNoCoreDeviceProxyBelow174: iOS 17.0–17.3 answer InvalidService.
func TestNoCoreDeviceProxyBelow174(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("17.0")})
	if _, err := r.pairLockdown(t, d); err != nil {
		t.Fatal(err)
	}
	_, err := r.coreDeviceProxy(t, d)
	if !errors.Is(err, lockdown.ErrInvalidService) {
		t.Fatalf("CoreDeviceProxy on 17.0 = %v, want InvalidService", err)
	}
}

// TestUntrustedRSDP2 walks the RSD path on loopback: the untrusted RSD
// lists the tunnel service, RemotePairing pairs (Trust) and verifies over
// it, createListener opens a TLS-PSK port and the tunnel reaches the
// trusted RSD.
func TestUntrustedRSDP2(t *testing.T) {
	forEachDeviceEnd(t, testUntrustedRSDP2)
}

func testUntrustedRSDP2(t *testing.T, end DeviceEnd) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Index: 1, Profile: MustProfile("17.0"), DeviceEnd: end})
	ctx := testCtx(t)
	ep := d.Endpoints()
	var dl net.Dialer
	nc, err := dl.DialContext(ctx, "tcp", ep.UntrustedRSD)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rsd.NewClient(ctx, nc, nil)
	if err != nil {
		t.Fatalf("untrusted RSD: %v", err)
	}
	defer c.Close()
	var names []string
	for _, s := range c.Handshake.Services {
		names = append(names, s.Name)
	}
	// Only what the simulator serves: the tunnel service, the untrusted
	// lockdown shim and the insecure notification proxy (the published
	// list's other four are not listed).
	if len(names) != 3 || !slices.Contains(names, pairing.TunnelServiceName) || !slices.Contains(names, LockdownUntrusted) ||
		!slices.Contains(names, "com.apple.mobile.insecure_notification_proxy.shim.remote") {
		t.Errorf("untrusted services %v", names)
	}
	if c.Handshake.Device().UDID != d.UDID() || c.Handshake.UUID.String() != ep.RSDUUID {
		t.Errorf("untrusted handshake %+v uuid %v", c.Handshake.Device(), c.Handshake.UUID)
	}
	ts, _ := c.Handshake.Service(pairing.TunnelServiceName)
	host, _, _ := net.SplitHostPort(ep.UntrustedRSD)
	store := pairing.RecordStore{Dir: t.TempDir()}
	ns, p, err := remoteTunnel(t, ctx, store, xpcDial(joinHostPort(host, ts.Port)), host)
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.PairSetups != 1 || st.Verifies < 2 {
		t.Errorf("stats after pairing %+v", st)
	}
	checkTrusted(t, ctx, d, ns, p)

	// The untrusted lockdown shim shows only the public values.
	ls, _ := c.Handshake.Service(LockdownUntrusted)
	shimConn, err := dl.DialContext(ctx, "tcp", joinHostPort(host, ls.Port))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := lockdown.ShimClient(ctx, shimConn, LockdownUntrusted, "sim-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for key, wantErr := range map[string]bool{"ProductVersion": false, "SerialNumber": true} {
		sc.Send(ctx, map[string]any{"Request": "GetValue", "Key": key})
		var reply map[string]any
		if err := sc.Receive(ctx, &reply); err != nil {
			t.Fatal(err)
		}
		if _, isErr := reply["Error"]; isErr != wantErr {
			t.Errorf("untrusted GetValue %s = %v", key, reply)
		}
	}
}

// TestNetworkPairingP3 pairs over RPPairing on TCP and tunnels through it.
func TestNetworkPairingP3(t *testing.T) {
	forEachDeviceEnd(t, testNetworkPairingP3)
}

func testNetworkPairingP3(t *testing.T, end DeviceEnd) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Index: 2, DeviceEnd: end})
	ctx := testCtx(t)
	ep := d.Endpoints()
	host, _, _ := net.SplitHostPort(ep.NetworkPairing)
	ns, p, err := remoteTunnel(t, ctx, pairing.RecordStore{Dir: t.TempDir()}, rppDial(ep.NetworkPairing), host)
	if err != nil {
		t.Fatal(err)
	}
	checkTrusted(t, ctx, d, ns, p)
}

// forEachDeviceEnd runs test on every device end this OS has (the kernel
// one on Linux, where tests run as root).
func forEachDeviceEnd(t *testing.T, test func(*testing.T, DeviceEnd)) {
	ends := []DeviceEnd{DeviceEndNetstack}
	if runtime.GOOS == "linux" {
		ends = append(ends, DeviceEndKernel)
	}
	for _, end := range ends {
		t.Run(string(end), func(t *testing.T) { test(t, end) })
	}
}
