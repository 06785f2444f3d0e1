package testkit

import (
	"testing"

	"github.com/iosmux/iosmux/internal/netns"
)

// NetNS is a throwaway network namespace for a test (see internal/netns).
type NetNS struct{ ns *netns.NS }

// NewNetNS creates a network namespace for the test and closes it at
// cleanup. It needs root (CAP_SYS_ADMIN); without it the test fails.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return &NetNS{ns: ns}
}

// Do runs f on an OS thread that is inside the namespace. Sockets, TUN
// devices and netlink sockets that f creates belong to the namespace and keep
// working from any goroutine afterwards. Goroutines that f starts do not run
// inside the namespace.
func (ns *NetNS) Do(f func() error) error { return ns.ns.Do(f) }
