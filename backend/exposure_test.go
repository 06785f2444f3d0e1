package backend

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

func logTo(w *testkit.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func TestPickAddr(t *testing.T) {
	addrs := []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("fe80::1"),
		netip.MustParseAddr("192.168.1.20"), netip.MustParseAddr("2001:db8::20"), netip.MustParseAddr("10.0.0.5"),
	}
	tests := []struct {
		name  string
		v6    bool
		addrs []netip.Addr
		want  string
	}{
		{"v6 wildcard: global IPv6", true, addrs, "2001:db8::20"},
		{"v4 wildcard: first IPv4", false, addrs, "192.168.1.20"},
		{"v6 wildcard without IPv6: IPv4", true, addrs[:4], "192.168.1.20"},
		{"v6, loopback only", true, addrs[:3], "::1"},
		{"v4, loopback only", false, addrs[:3], "127.0.0.1"},
	}
	for _, tt := range tests {
		got, err := pickAddr(tt.v6, tt.addrs)
		if err != nil || got.String() != tt.want {
			t.Errorf("%s: %v, %v; want %s", tt.name, got, err, tt.want)
		}
	}
	for _, bad := range []struct{ host, adv string }{{"::", "0.0.0.0"}, {"0.0.0.0", "2001:db8::1"}} {
		if _, err := publicAddr(netip.MustParseAddr(bad.host), netip.MustParseAddr(bad.adv)); err == nil {
			t.Errorf("listener %s advertising %s accepted", bad.host, bad.adv)
		}
	}
	if a, err := publicAddr(netip.MustParseAddr("::"), netip.MustParseAddr("192.0.2.7")); err != nil || a.String() != "192.0.2.7" {
		t.Errorf("explicit advertise: %v, %v", a, err)
	}
}

// fakeConn has only the addresses allowed looks at.
type fakeConn struct {
	net.Conn
	remote, local net.Addr
}

func (c fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c fakeConn) LocalAddr() net.Addr  { return c.local }

// TestAllowClients: with an allow-list, clients outside it are refused
// (and logged, at most once a second); loopback always passes; without a
// list everyone does.
func TestAllowClients(t *testing.T) {
	var logs testkit.Buffer
	b := &Backend{cfg: Config{AllowClients: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("2001:db8::/32")}},
		log: logTo(&logs)}
	local := &net.TCPAddr{IP: net.IPv6zero, Port: 58783}
	conn := func(s string) net.Conn {
		return fakeConn{remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)), local: local}
	}
	for _, tt := range []struct {
		remote string
		want   bool
	}{
		{"192.168.1.9:5000", true},
		{"[::ffff:192.168.1.9]:5000", true},
		{"[2001:db8::9]:5000", true},
		{"127.0.0.1:5000", true},
		{"[::1]:5000", true},
		{"192.168.2.9:5000", false},
		{"[fe80::9%eth0]:5000", false},
		{"10.0.0.1:5000", false},
	} {
		if got := b.allowed(conn(tt.remote)); got != tt.want {
			t.Errorf("client %s allowed = %v, want %v", tt.remote, got, tt.want)
		}
	}
	if n := strings.Count(logs.String(), "client refused"); n != 1 {
		t.Errorf("%d refusals logged in well under a second, want 1:\n%s", n, logs.String())
	}
	b.refused.Store(time.Now().Add(-2 * time.Second).UnixNano())
	b.allowed(conn("10.0.0.1:1"))
	if n := strings.Count(logs.String(), "client refused"); n != 2 {
		t.Errorf("a refusal a second later was not logged")
	}
	open := &Backend{log: logTo(&logs)}
	if !open.allowed(conn("10.0.0.1:5000")) {
		t.Error("without an allow-list a client was refused")
	}
}
