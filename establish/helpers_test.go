package establish

import (
	"flag"
	"net/netip"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tunnel"
)

// testRSDPort is the devices' RSD port in these tests.
const testRSDPort = 58783

// bulkMiB sizes the end-to-end transfers (each way). Run with
// -bulk-mib=1024 for the 1 GiB acceptance transfer.
var bulkMiB = flag.Int("bulk-mib", 16, "MiB moved each way by the end-to-end tunnel tests (1024 for the 1 GiB acceptance run)")

// rsdDevice is a device serving the bulk service on its RSD port.
func rsdDevice(t *testing.T) *tunnel.Server {
	t.Helper()
	dev, err := tunnel.NewServer(tunnel.ServerConfig{RSDPort: testRSDPort, Rand: testkit.Rand(2)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	ln, err := dev.ListenTCP(testRSDPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testkit.ServeBulkListener(ln, nil))
	return dev
}

// deviceSession is the fixture device's session with the host at client.
func deviceSession(t *testing.T, f *fixture, client netip.Addr) *tunnel.Session {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sessions[client]
	if s == nil {
		t.Fatalf("no device session for %v", client)
	}
	return s
}
