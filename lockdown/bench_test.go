package lockdown

import (
	"net"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
)

// BenchmarkStartSession: usbmux Connect to lockdownd, StartSession and its
// TLS handshake (RSA-2048 certificates), one GetValue, close — what every
// host tool does before it can start a service.
func BenchmarkStartSession(b *testing.B) {
	r := newRig(b, ServerConfig{})
	rec := r.pair(b)
	ctx := b.Context()
	for b.Loop() {
		c, err := DialUsbmux(ctx, r.mux, r.deviceID, ClientConfig{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.StartSession(ctx, rec); err != nil {
			b.Fatal(err)
		}
		if _, err := c.GetValue(ctx, "", "ProductVersion"); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkServiceBulk: bytes through a TLS service connection (the
// CoreDeviceProxy path: StartService, Connect, TLS), 8 MiB each way per op.
func BenchmarkServiceBulk(b *testing.B) {
	const n = 8 << 20
	r := newRig(b, ServerConfig{Services: map[string]ServiceHandler{
		CoreDeviceProxy: {SSL: true, Serve: func(c net.Conn) { testkit.ServeBulk(c) }},
	}})
	rec := r.pair(b)
	ctx := b.Context()
	c := r.dial(b)
	if _, err := c.StartSession(ctx, rec); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(2 * n)
	for b.Loop() {
		info, err := c.StartService(ctx, CoreDeviceProxy, nil)
		if err != nil {
			b.Fatal(err)
		}
		svc, err := DialService(ctx, r.mux, r.deviceID, info, rec, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := testkit.Bulk(svc, n, n); err != nil {
			b.Fatal(err)
		}
		svc.Close()
	}
}
