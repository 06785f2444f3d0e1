package lockdown

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/usbmux"
)

// RSA key generation dominates test time under -race, so the keys a test
// does not need fresh are made once.
var (
	keysOnce sync.Once
	testKeys []*rsa.PrivateKey
)

func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() {
		for range 2 {
			k, err := rsa.GenerateKey(rand.Reader, keyBits)
			if err != nil {
				panic(err)
			}
			testKeys = append(testKeys, k)
		}
	})
	return testKeys[i]
}

const testUDID = "00008110-001A2B3C0E01401E"

func testValues() map[string]any {
	return map[string]any{
		"UniqueDeviceID":          testUDID,
		"ProductVersion":          "17.5",
		"ProductType":             "iPhone15,2",
		"BuildVersion":            "21F79",
		"DeviceClass":             "iPhone",
		"DeviceName":              "Test iPhone",
		"UniqueChipID":            uint64(0x1A2B3C0E01401E),
		"WiFiAddress":             "aa:bb:cc:dd:ee:ff",
		"SerialNumber":            "F2LXXXXXXXXX",
		"SupportedDeviceFamilies": []any{uint64(1)},
	}
}

// rig is a simulated iPhone behind a usbmux server on a UNIX socket.
type rig struct {
	srv      *usbmux.Server
	mux      *usbmux.Client
	dev      *Server
	ports    *usbmux.PortMux
	deviceID uint32
}

func echo(conn net.Conn) { io.Copy(conn, conn) }

func newRig(t testing.TB, cfg ServerConfig) *rig {
	t.Helper()
	r := &rig{ports: usbmux.NewPortMux(0)}
	if cfg.Values == nil {
		cfg.Values = testValues()
	}
	if cfg.Key == nil {
		cfg.Key = testKey(t, 0)
	}
	if cfg.Services == nil {
		cfg.Services = map[string]ServiceHandler{CoreDeviceProxy: {SSL: true, Serve: echo}}
	}
	cfg.Ports = r.ports
	dev, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.dev = dev
	r.ports.Handle(Port, dev.ServeConn)
	r.srv = usbmux.NewServer(usbmux.ServerConfig{})
	r.deviceID = r.srv.AddDevice(usbmux.DeviceEntry{SerialNumber: testUDID, ConnectionType: usbmux.ConnectionUSB}, r.ports)

	dir, err := os.MkdirTemp("", "ld")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "usbmuxd")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(l) }()
	t.Cleanup(func() {
		dev.Close()
		r.srv.Close()
		<-done
		os.RemoveAll(dir)
	})
	r.mux = usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: path}})
	return r
}

func (r *rig) dial(t testing.TB) *Client {
	t.Helper()
	c, err := DialUsbmux(testCtx(t), r.mux, r.deviceID, ClientConfig{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pair runs the classic Pair flow and stores the record in usbmuxd
// (PairUsbmux, what tunneld and the backend use).
func (r *rig) pair(t testing.TB) *PairRecord {
	t.Helper()
	rec, err := PairUsbmux(testCtx(t), r.mux, usbmux.DeviceEntry{DeviceID: r.deviceID, SerialNumber: testUDID}, PairOptions{HostName: "test host"})
	if err != nil {
		t.Fatalf("Pair: %v", err)
	}
	return rec
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
