package backend

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/rsd"
)

// TestWildcardNeverAdvertised: a backend listening on every address lists
// a concrete one (what a client can dial), for the RSD and for the
// untrusted RSD and pairing ports; Exposed says it listens beyond
// loopback. The wildcards are bound in a namespace of the test's own.
func TestWildcardNeverAdvertised(t *testing.T) {
	ns := testkit.NewNetNS(t)
	dir := t.TempDir()
	u, err := rsd.LoadOrCreateHostUUID(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b *Backend
	err = ns.Do(func() (err error) {
		b, err = New(Config{Listen: "[::]:0", Untrusted: "[::]:0", Pairing: "0.0.0.0:0",
			Advertise: netip.MustParseAddr("::1"), StateDir: dir, HostUUID: u, Logger: testLogger(t)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a := b.Addr(); a.Addr().String() != "::1" || a.Port() == 0 {
		t.Errorf("Addr = %v, want ::1 and the port", a)
	}
	for _, a := range []net.Addr{b.UntrustedAddr(), b.PairingAddr()} {
		if strings.HasPrefix(a.String(), "[::]") || strings.HasPrefix(a.String(), "0.0.0.0") {
			t.Errorf("a wildcard is advertised: %s", a)
		}
	}
	if !b.Exposed() {
		t.Error("Exposed = false for wildcard listeners")
	}
	if newBackend(t, nil).Exposed() {
		t.Error("Exposed = true for a loopback backend")
	}
}
