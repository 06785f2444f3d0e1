package tunneld_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tunneld"
)

// TestListenAddressFamily: --host 0.0.0.0 binds IPv4 only (as
// pymobiledevice3), and the address the daemon reports is the one bound.
// The binds happen in a namespace of the test's own, so nothing listens
// on this machine's interfaces.
func TestListenAddressFamily(t *testing.T) {
	ns := testkit.NewNetNS(t)
	for _, tt := range []struct {
		host, network, prefix string
		family                int
	}{
		{"0.0.0.0", "tcp4", "0.0.0.0:", syscall.AF_INET},
		{"::", "tcp6", "[::]:", syscall.AF_INET6},
		{"localhost", "tcp", "127.0.0.1:", syscall.AF_INET},
	} {
		var (
			network string
			ln      net.Listener
		)
		listen := func(n, addr string) (net.Listener, error) {
			network = n
			err := ns.Do(func() (err error) { ln, err = net.Listen(n, addr); return err })
			return ln, err
		}
		d, err := tunneld.New(tunneld.Config{Host: tt.host, Port: -1, Listen: listen})
		if err != nil {
			t.Fatalf("%s: %v", tt.host, err)
		}
		addr := d.Addr(tunneld.APIPMD3)
		if network != tt.network || !strings.HasPrefix(addr, tt.prefix) {
			t.Errorf("--host %s: listened on %s %s, want %s %s…", tt.host, network, addr, tt.network, tt.prefix)
		}
		// The socket's own family, not its printed form: an AF_INET6
		// socket bound to :: takes IPv4 too, an AF_INET one cannot take
		// IPv6.
		rc, err := ln.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var family int
		rc.Control(func(fd uintptr) { family, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN) })
		if err != nil || family != tt.family {
			t.Errorf("--host %s: socket family %d (%v), want %d", tt.host, family, err, tt.family)
		}
		d.Close()
	}
}

// TestAddressInUse: a busy API port fails New at once with a sentence
// that says what is probably there and how to check.
func TestAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	_, err = tunneld.New(tunneld.Config{Port: port})
	want := fmt.Sprintf("another tunneld is probably running on %d (curl http://127.0.0.1:%d/hello)", port, port)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), want) {
		t.Errorf("New on a busy port: %v; want EADDRINUSE and %q", err, want)
	}
}
