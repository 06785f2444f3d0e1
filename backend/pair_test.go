package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
	"golang.zx2c4.com/wireguard/tun"
)

// pairWith pairs a host (our RemotePairing client) with whatever serves
// the tunnel service listed by the RSD at rsdAddr.
func pairWith(t *testing.T, rsdAddr string, store pairing.RecordStore) *pairing.PairResult {
	t.Helper()
	ctx := testCtx(t)
	c := readHandshake(t, netDial, rsdAddr, xpc.UUID{})
	svc, ok := c.Handshake.Service(pairing.TunnelServiceName)
	c.Close()
	if !ok {
		t.Fatalf("%s lists no %s", rsdAddr, pairing.TunnelServiceName)
	}
	host, _, _ := net.SplitHostPort(rsdAddr)
	svcAddr := net.JoinHostPort(host, strconv.Itoa(int(svc.Port)))
	res, err := pairing.Pair(ctx, &pairing.PairConfig{
		Host:  pairing.ClientConfig{HostName: "iosmux-test-host"},
		Store: store,
		Dial: func(ctx context.Context) (pairing.Transport, error) {
			nc, err := net.Dial("tcp", svcAddr)
			if err != nil {
				return nil, err
			}
			xc, err := xpc.Client(ctx, nc, nil)
			if err != nil {
				return nil, err
			}
			return pairing.NewXPC(xc), nil
		},
	})
	if err != nil {
		t.Fatalf("pairing with the backend: %v", err)
	}
	return res
}

func userspaceOptions(store pairing.RecordStore, udid string, ns **utun.Netstack) establish.Options {
	return establish.Options{
		UDID: udid, Records: store, HostName: "iosmux-test-host",
		NewTUN: func(p tunnel.Params) (tun.Device, error) {
			var err error
			*ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
			return *ns, err
		},
	}
}

// checkThroughTunnel reads the backend's RSD through a client tunnel and
// uses services through it: a forwarded one (by the Handshake's port) and
// one by the device's own port (the "other port" path).
func checkThroughTunnel(t *testing.T, tn *establish.Tunnel, ns *utun.Netstack, d *sim.Device, want *rsd.Handshake) {
	t.Helper()
	c := readHandshake(t, ns.DialContext, tn.RSD().String(), xpc.UUID{})
	defer c.Close()
	if !bytes.Equal(bodyBytes(t, c.Handshake.Properties), bodyBytes(t, want.Properties)) {
		t.Error("the Handshake through the client tunnel has other Properties than the device's")
	}
	dial := func(port uint16) net.Conn {
		nc, err := ns.DialContext(testCtx(t), "tcp", netip.AddrPortFrom(tn.Params.ServerAddress, port).String())
		if err != nil {
			t.Fatalf("dial port %d through the client tunnel: %v", port, err)
		}
		return nc
	}
	src, _ := c.Handshake.Service(sim.SourceService)
	useSource(t, dial(src.Port), 2<<20)
	sink, _ := c.Handshake.Service(sim.SinkService)
	useSink(t, dial(sink.Port), 2<<20)
	// Not a forwarder port: the same port on the device.
	useSource(t, dial(d.TrustedService(sim.SourceService)), 1<<16)
	// A port nothing listens on is refused, as the device refuses it.
	if nc, err := ns.DialContext(testCtx(t), "tcp", netip.AddrPortFrom(tn.Params.ServerAddress, 9).String()); err == nil {
		nc.Close()
		t.Error("port 9 through the client tunnel: connected; want refused")
	}
}

// TestPairAndTunnelThroughBackend: a host pairs with the backend over its
// untrusted RSD's tunnel service (the backend's own identity, stored 0600),
// opens a TLS-PSK tunnel to it (P2 as to a device), and reaches the
// device's services and the backend's RSD through that tunnel; a second
// tunnel verifies with the stored pairing. The same record then works on
// the network pairing path (RPPairing, P3). The device sees only the
// backend: no pairing, no RSD peer change.
func TestPairAndTunnelThroughBackend(t *testing.T) {
	testkit.CheckLeaks(t)
	b, d, _ := attached(t, "18.2", func(c *Config) {
		c.Untrusted = "127.0.0.1:0"
		c.Pairing = "127.0.0.1:0"
	})
	want := b.DeviceHandshake()
	store := pairing.RecordStore{Dir: t.TempDir()}
	ut := b.UntrustedAddr().String()

	// The untrusted RSD lists only the tunnel service.
	c := readHandshake(t, netDial, ut, xpc.UUID{})
	if len(c.Handshake.Services) != 1 || c.Handshake.Services[0].Name != pairing.TunnelServiceName {
		t.Errorf("untrusted RSD lists %+v, want only the tunnel service", c.Handshake.Services)
	}
	if c.Handshake.Device().UDID != d.UDID() {
		t.Errorf("untrusted RSD UDID %q", c.Handshake.Device().UDID)
	}
	c.Close()

	res := pairWith(t, ut, store)
	if res.ID != d.UDID() {
		t.Errorf("record named %q, want the device's identifier %q (its handshake)", res.ID, d.UDID())
	}
	st := statFile(t, filepath.Join(b.cfg.StateDir, identityFileName(d.UDID())))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("identity file mode %v, want 0600", st.Mode().Perm())
	}
	var idf identityFile
	raw, _ := os.ReadFile(filepath.Join(b.cfg.StateDir, identityFileName(d.UDID())))
	if err := json.Unmarshal(raw, &idf); err != nil || len(idf.Hosts) != 1 {
		t.Fatalf("identity file: %v, hosts %d", err, len(idf.Hosts))
	}

	for run := range 2 {
		var ns *utun.Netstack
		tn, err := establish.Establish(testCtx(t), discovery.Event{Source: discovery.SourceNCM, Addr: netip.MustParseAddrPort(ut)}, userspaceOptions(store, d.UDID(), &ns))
		if err != nil {
			t.Fatalf("run %d: tunnel through the backend: %v", run, err)
		}
		checkThroughTunnel(t, tn, ns, d, want)
		tn.Close()
	}

	var ns *utun.Netstack
	tn, err := establish.Establish(testCtx(t), discovery.Event{Source: discovery.SourceRemotePairing, Addr: netip.MustParseAddrPort(b.PairingAddr().String())}, userspaceOptions(store, d.UDID(), &ns))
	if err != nil {
		t.Fatalf("network pairing tunnel through the backend: %v", err)
	}
	checkThroughTunnel(t, tn, ns, d, want)
	tn.Close()

	if st := d.Stats(); st.PairSetups != 0 || st.Verifies != 0 || st.Reattaches != 0 {
		t.Errorf("the device saw pairing or a peer change: %+v", st)
	}

	// A restarted backend keeps its identity and its paired hosts.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := openIdentityStore(b.cfg.StateDir, d.UDID(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s2.identity().Identifier != idf.Identifier {
		t.Error("identity changed on reload")
	}
	if _, ok := s2.LookupHost(idf.Hosts[0].Identifier); !ok {
		t.Error("paired host lost on reload")
	}
}

func statFile(t *testing.T, p string) os.FileInfo {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
