package usbmux

import (
	"net"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
)

// BenchmarkListDevices: one request on a fresh socket, as every client call
// does, against our server with two devices.
func BenchmarkListDevices(b *testing.B) {
	srv := NewServer(ServerConfig{})
	srv.AddDevice(usbDev, NewPortMux(0))
	srv.AddDevice(netDev, NewPortMux(0))
	c, _ := startServer(b, srv)
	ctx := b.Context()
	for b.Loop() {
		if _, err := c.ListDevices(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnectBulk: bytes through a Connect pipe (8 MiB each way per
// op): after Result 0 the server hands its socket to the device handler,
// so this is the UNIX socket itself plus nothing of ours.
func BenchmarkConnectBulk(b *testing.B) {
	const n = 8 << 20
	srv := NewServer(ServerConfig{})
	ports := NewPortMux(0)
	ports.Handle(9, func(conn net.Conn) { testkit.ServeBulk(conn) })
	id := srv.AddDevice(usbDev, ports)
	c, _ := startServer(b, srv)
	ctx := b.Context()
	b.SetBytes(2 * n)
	for b.Loop() {
		conn, err := c.Connect(ctx, id, 9)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := testkit.Bulk(conn, n, n); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
