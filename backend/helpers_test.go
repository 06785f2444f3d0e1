package backend

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/sim/simtest"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
)

// One lockdown key for every simulated device (RSA generation is slow).
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// simDevice starts one simulated iPhone behind a simulated usbmuxd.
func simDevice(t testing.TB, profile string) (*sim.Fleet, *sim.Device) {
	return simDeviceRealism(t, profile, sim.Realism{})
}

// simDeviceRealism is simDevice with a device as awkward as a real one.
func simDeviceRealism(t testing.TB, profile string, realism sim.Realism) (*sim.Fleet, *sim.Device) {
	t.Helper()
	f := simtest.StartFleet(t, sim.FleetConfig{Count: 1, Profile: sim.MustProfile(profile), LockdownKey: testKey(), Realism: realism})
	return f, f.Devices()[0]
}

// hostTunnel is iosmux's host side of a CoreDeviceProxy tunnel to d
// (simtest: lockdown pairing, service TLS, CDTunnel) ending in a userspace
// stack; the Link reaches the device through it. The tunnel closes at
// cleanup.
type hostTunnel struct {
	*simtest.Tunnel
	ns *utun.Netstack
}

func (h *hostTunnel) link() DeviceTunnel {
	return DeviceTunnel{RSD: h.RSD(), Dial: h.ns.DialContext, Done: h.Done()}
}

func openTunnel(t testing.TB, f *sim.Fleet, d *sim.Device) *hostTunnel {
	t.Helper()
	tn := simtest.OpenTunnel(t, f, d)
	return &hostTunnel{Tunnel: tn, ns: tn.Net}
}

// newBackend starts a backend on loopback with a fresh state dir.
func newBackend(t testing.TB, tweak func(*Config)) *Backend {
	t.Helper()
	dir := t.TempDir()
	u, err := rsd.LoadOrCreateHostUUID(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: "127.0.0.1:0", StateDir: dir, HostUUID: u, Logger: testLogger(t)}
	if tweak != nil {
		tweak(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// attached is a simulated device with a tunnel and a backend serving it.
func attached(t testing.TB, profile string, tweak func(*Config)) (*Backend, *sim.Device, *hostTunnel) {
	t.Helper()
	f, d := simDevice(t, profile)
	h := openTunnel(t, f, d)
	b := newBackend(t, tweak)
	if err := b.Attach(testCtx(t), h.link()); err != nil {
		t.Fatal(err)
	}
	return b, d, h
}

// readHandshake is an RSD client of addr (through dial) presenting host.
func readHandshake(t testing.TB, dial utun.DialFunc, addr string, host xpc.UUID) *rsd.Client {
	t.Helper()
	ctx := testCtx(t)
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial RSD %s: %v", addr, err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: host})
	if err != nil {
		t.Fatalf("RSD %s: %v", addr, err)
	}
	return c
}

var netDial = (&net.Dialer{}).DialContext

// bodyBytes is the encoding of a dictionary, for exact comparisons.
func bodyBytes(t testing.TB, d *xpc.Dict) []byte {
	t.Helper()
	if d == nil {
		return nil
	}
	b, err := xpc.AppendValue(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// useSource asks the simulator's byte source for n bytes over c and checks
// them against sim.SourceStream.
func useSource(t testing.TB, c net.Conn, n int) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	var req [8]byte
	binary.BigEndian.PutUint64(req[:], uint64(n))
	if _, err := c.Write(req[:]); err != nil {
		t.Fatalf("source request: %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("source read: %v", err)
	}
	want := make([]byte, n)
	io.ReadFull(sim.SourceStream(), want)
	if !bytes.Equal(got, want) {
		t.Fatalf("source: got %d bytes, want %d matching SourceStream", len(got), n)
	}
}

// useSink sends n bytes to the byte sink over c, half-closes, and checks
// the sink's count and SHA-256 (which it sends only after our EOF).
func useSink(t testing.TB, c net.Conn, n int) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	data := make([]byte, n)
	io.ReadFull(testkit.Rand(uint64(n)), data)
	if _, err := c.Write(data); err != nil {
		t.Fatalf("sink write: %v", err)
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T cannot half-close", c)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("sink half-close: %v", err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("sink reply: %v", err)
	}
	sum := sha256.Sum256(data)
	if len(reply) != 8+32 || binary.BigEndian.Uint64(reply) != uint64(n) || !bytes.Equal(reply[8:], sum[:]) {
		t.Fatalf("sink reply %x, want count %d and sha256 %x", reply, n, sum)
	}
}
