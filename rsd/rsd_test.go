package rsd

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/xpc"
)

func encode(t *testing.T, m *xpc.Message) []byte {
	t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeviceHandshakeVector(t *testing.T) {
	in := testkit.ReadHex(t, "10_rsd_handshake_device.hex")
	m, err := xpc.Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHandshake(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	d := h.Device()
	if d.UDID != "222222222" || d.ProductType != "iPhone15,3" || d.OSVersion != "17.0" || d.BuildVersion != "21A5277j" ||
		d.UniqueChipID != 111111 || d.BootSessionUUID != "a4ba4745-5925-4e45-93ab-46ec91880c91" || d.RemoteXPCVersionFlags != RemoteXPCVersionFlags {
		t.Errorf("device: %+v", d)
	}
	if h.UUID.String() != ExampleUUID || h.MessagingProtocolVersion != 3 || len(h.Services) != 7 || len(h.Skipped) != 0 {
		t.Errorf("handshake: uuid %v mpv %d services %d", h.UUID, h.MessagingProtocolVersion, len(h.Services))
	}
	s, ok := h.Service("com.apple.internal.dt.coredevice.untrusted.tunnelservice")
	if !ok || s.Port != 52291 || !s.UsesRemoteXPC() || s.Properties.Int64("ServiceVersion") != 2 {
		t.Errorf("tunnelservice: %+v", s)
	}
	if s, _ := h.Service("com.apple.mobile.insecure_notification_proxy.shim.remote"); !s.IsShim() || s.Properties != nil {
		t.Errorf("shim entry: %+v", s)
	}
	// Building the body from the parsed form reproduces the vector.
	out := encode(t, &xpc.Message{Flags: xpc.FlagsMsg, ID: DeviceMessageID, Body: h.Body()})
	if !bytes.Equal(out, in) {
		t.Error("Handshake.Body does not reproduce vector 10")
	}
	// So does the example in code, which the demo serves.
	ex := Handshake{MessagingProtocolVersion: 3, UUID: mustUUID(ExampleUUID), Properties: ExampleProperties(), Services: ExampleServices()}
	if got := encode(t, &xpc.Message{Flags: xpc.FlagsMsg, ID: DeviceMessageID, Body: ex.Body()}); !bytes.Equal(got, in) {
		t.Error("ExampleProperties/ExampleServices do not reproduce vector 10")
	}
}

func TestHostHandshakeVector(t *testing.T) {
	want := testkit.ReadHex(t, "11_rsd_handshake_host.hex")
	got := encode(t, &xpc.Message{Flags: xpc.FlagsMsg, ID: HostMessageID, Body: HostHandshake(mustUUID("00112233-4455-6677-8899-aabbccddeeff"))})
	if !bytes.Equal(got, want) {
		t.Errorf("host handshake:\n got %x\nwant %x", got, want)
	}
}

func TestParseHandshakeRejects(t *testing.T) {
	if _, err := ParseHandshake(xpc.NewDict("MessageType", xpc.String("Other"))); !errors.Is(err, ErrNotHandshake) {
		t.Errorf("got %v", err)
	}
	if _, err := ParseHandshake(xpc.NewDict("MessageType", xpc.String("Handshake"))); err == nil {
		t.Error("accepted a Handshake without UniqueDeviceID")
	}
	h, err := ParseHandshake(xpc.NewDict("MessageType", xpc.String("Handshake"),
		"Properties", xpc.NewDict("UniqueDeviceID", xpc.String("u")),
		"Services", xpc.NewDict("bad", xpc.NewDict("Port", xpc.String("x")), "ok", xpc.NewDict("Port", xpc.String("1")))))
	if err != nil || len(h.Services) != 1 || h.Skipped[0] != "bad" {
		t.Errorf("got %+v %v", h, err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func exampleServer(t *testing.T) *Server {
	s, err := NewServer(ServerConfig{Properties: ExampleProperties(), Services: ExampleServices()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClientServer(t *testing.T) {
	testkit.CheckLeaks(t)
	srv := exampleServer(t)
	if srv.UUID().IsZero() || srv.UUID().String() == ExampleUUID {
		t.Fatalf("server uuid %v: want a fresh random one", srv.UUID())
	}
	if other := exampleServer(t); other.UUID() == srv.UUID() {
		t.Fatal("two boots share a uuid")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	hostID := mustUUID("00112233-4455-6677-8899-aabbccddeeff")
	for i, cfg := range []*ClientConfig{{HostUUID: hostID}, nil} {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(ctx, nc, cfg)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		h := c.Handshake
		if h.UUID != srv.UUID() || h.MessagingProtocolVersion != ProtocolVersion || h.Device().ProductType != "iPhone15,3" || len(h.Services) != 7 {
			t.Errorf("client %d: got %+v", i, h)
		}
		c.Close()
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func TestServerRecordsHostUUID(t *testing.T) {
	srv := exampleServer(t)
	a, b := net.Pipe()
	peer := make(chan Peer, 1)
	go func() {
		p, err := srv.ServeConn(ctxT(t), b)
		if err != nil {
			t.Error(err)
		}
		peer <- p
	}()
	hostID, _ := xpc.NewRandomUUID(nil)
	c, err := NewClient(ctxT(t), a, &ClientConfig{HostUUID: hostID})
	if err != nil {
		t.Fatal(err)
	}
	// The host Handshake was sent before the device's was read; closing
	// ends ServeConn, which reports it.
	time.Sleep(0)
	c.Close()
	if p := <-peer; p.UUID != hostID {
		t.Errorf("server saw host uuid %v, want %v", p.UUID, hostID)
	}
}

func TestHostUUIDPersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	u1, err := LoadOrCreateHostUUID(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, HostUUIDFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", fi.Mode(), err)
	}
	u2, err := LoadOrCreateHostUUID(dir)
	if err != nil || u2 != u1 || u1.IsZero() {
		t.Fatalf("second load: %v %v (first %v)", u2, err, u1)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	os.WriteFile(filepath.Join(dir, HostUUIDFile), []byte("junk"), 0o600)
	if _, err := LoadOrCreateHostUUID(dir); err == nil {
		t.Error("corrupt file silently replaced")
	}
}

// TestHostUUIDRace: of several first uses at once, all get the one
// identity that is stored.
func TestHostUUIDRace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	const n = 8
	got := make([]xpc.UUID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = LoadOrCreateHostUUID(dir) })
	}
	wg.Wait()
	stored, err := LoadOrCreateHostUUID(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil || got[i] != stored {
			t.Errorf("caller %d: %v, %v; stored %v", i, got[i], errs[i], stored)
		}
	}
}

// TestClientBytesMatchPymobiledevice3: with the vector's host UUID, our RSD
// client writes vector h2_client_init_pymobiledevice3_default byte for byte
// (set-up, SETTINGS ACK, then the host Handshake of vector 11).
//
// The vector's description says 16 MiB windows, but its bytes carry 1 MiB
// (SETTINGS 0x00100000, WINDOW_UPDATE 0x000f0001), our default; with
// WindowSize 16 MiB we write the 16 MiB frames of xpc.md §1.3–§1.4 instead.
func TestClientBytesMatchPymobiledevice3(t *testing.T) {
	want := testkit.ReadHex(t, "h2_client_init_pymobiledevice3_default.hex")
	if g := clientBytes(t, len(want), 0); !bytes.Equal(g, want) {
		t.Errorf("client bytes:\n got %x\nwant %x", g, want)
	}
	g := clientBytes(t, len(want), 16<<20)
	w16 := strings.Replace(strings.Replace(hex.EncodeToString(want), "000400100000", "000401000000", 1), "000f0001", "00ff0001", 1)
	if hex.EncodeToString(g) != w16 {
		t.Errorf("16 MiB client bytes:\n got %x\nwant %s", g, w16)
	}
}

// clientBytes runs NewClient against a scripted device and returns the first
// n bytes it writes.
func clientBytes(t *testing.T, n int, window uint32) []byte {
	a, b := net.Pipe()
	defer b.Close()
	// The device side, scripted: SETTINGS, then every mirror at once.
	dev := "00000c040000000000000300000064000400100000" + "000004080000000000000f0001" +
		"000000010400000001" + "00002c000000000001" + "920bb0290100000014000000000000000000000000000000423713420500000000f000000400000000000000" +
		"000000010400000003" + "000018000000000001" + "920bb029010200000000000000000000000000000000000000" +
		"000018000000000003" + "920bb029010040000000000000000000000000000000000000"
	dev = strings.ReplaceAll(dev, "0000000000000000000000000000000000", "00000000000000000000000000000000")
	raw, err := hex.DecodeString(dev)
	if err != nil {
		t.Fatal(err)
	}
	go b.Write(raw)
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, n)
		n, _ := io.ReadFull(b, buf)
		got <- buf[:n]
		b.Close() // ends NewClient, which would wait for a device Handshake
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// No device Handshake follows; the bytes written are what matter here.
	NewClient(ctx, a, &ClientConfig{HostUUID: mustUUID("00112233-4455-6677-8899-aabbccddeeff"), XPC: &xpc.Config{WindowSize: window}})
	return <-got
}
