package backend_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/discovery/mdns"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/interop/internal/netns"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
	"golang.zx2c4.com/wireguard/tun"
)

// go-ios v1.3.2 pairs and tunnels only through its public tunnel API, run by
// goiosbackend/ (a module of its own: go-ios needs an older gvisor than
// iosmux). It finds a device by browsing mDNS for _remoted._tcp on every
// interface and dials its untrusted RSD at port 58783, so the test runs in a
// network namespace of its own (the test binary re-executed with
// CLONE_NEWNET): a veth pair links "ios0", where the backend listens and
// advertises (--mdns), and "mac0"; nothing leaves the namespace.

const (
	netnsEnv  = "IOSMUX_BACKEND_GOIOS_NETNS"
	backendIf = "ios0"
	clientIf  = "mac0"
)

// TestGoIOSPairsWithBackend: go-ios finds the backend by its _remoted._tcp
// advertisement, pairs with it (the backend's own identity; pair-setup the
// first time, pair-verify the second), gets a TLS-PSK tunnel through it and
// reaches the simulated device's services through the backend's trusted
// RSD inside that tunnel. The network pairing path is then found by its
// _remotepairing._tcp advertisement and tunnels the same way. The device
// itself is never paired with and keeps one RSD peer.
func TestGoIOSPairsWithBackend(t *testing.T) {
	if bin := os.Getenv(netnsEnv); bin != "" {
		goiosPairInNetns(t, bin)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace (CI runs as root)")
	}
	bin := filepath.Join(t.TempDir(), "goiosbackend")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testenv.ModuleDir(), "backend", "goiosbackend")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building goiosbackend: %v\n%s", err, out)
	}
	netns.RunTest(t, "TestGoIOSPairsWithBackend", 4*time.Minute, netnsEnv+"="+bin)
}

// setupNetns brings up lo and the veth pair with fixed link-local
// addresses (no DAD), and turns DAD off for go-ios's TUN.
func setupNetns(t *testing.T) {
	for _, p := range []string{"/proc/sys/net/ipv6/conf/all/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad"} {
		if err := os.WriteFile(p, []byte("0"), 0); err != nil {
			t.Fatal(err)
		}
	}
	netns.Link(t, backendIf, "fe80::1", clientIf, "fe80::2")
}

type goiosResult struct {
	Address      string   `json:"address"`
	RsdPort      int      `json:"rsdPort"`
	UDID         string   `json:"udid"`
	RsdUDID      string   `json:"rsdUdid"`
	Services     []string `json:"services"`
	Echo         bool     `json:"echo"`
	Source       int      `json:"source"`
	SourceSHA256 string   `json:"sourceSHA256"`
}

func runGoIOS(t *testing.T, bin, udid, dir string) goiosResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, udid, dir)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("goiosbackend: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	// go-ios prints mDNS instance names to stdout before our JSON.
	out := stdout.Bytes()
	out = out[max(0, bytes.LastIndexByte(out, '{')):]
	var r goiosResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("goiosbackend output %q: %v", stdout.String(), err)
	}
	return r
}

func goiosPairInNetns(t *testing.T, bin string) {
	setupNetns(t)
	r := newRig(t, "18.2", func(c *backend.Config) {
		c.Untrusted = "[::]:58783"
		c.Pairing = "[::]:0"
		c.MDNS = []string{backendIf}
	})
	udid := r.dev.UDID()
	records := t.TempDir()
	const sourceLen = 4 << 20
	want := make([]byte, sourceLen)
	io.ReadFull(sim.SourceStream(), want)
	sum := sha256.Sum256(want)

	check := func(run string, res goiosResult) {
		t.Helper()
		addr, err := netip.ParseAddr(res.Address)
		if err != nil || r.params.ServerAddress == addr {
			t.Errorf("%s: tunnel ends at %q; want the backend's own address, not the device's %v", run, res.Address, r.params.ServerAddress)
		}
		if res.RsdPort != int(r.b.Addr().Port()) || res.RsdUDID != udid || !res.Echo ||
			res.Source != sourceLen || res.SourceSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: go-ios through the backend: %+v", run, res)
		}
		if len(res.Services) != len(r.device.Services) {
			t.Errorf("%s: go-ios read %d services through the tunnel, the device lists %d", run, len(res.Services), len(r.device.Services))
		}
	}
	// First run: go-ios's verify fails (unknown host), it pairs with the
	// backend (accepted without a dialog) and tunnels.
	check("after pairing", runGoIOS(t, bin, udid, records))
	self, _, err := pairing.ReadGoIOS(records)
	if err != nil {
		t.Fatalf("go-ios's own records: %v", err)
	}
	var idf struct {
		Hosts []struct {
			Identifier string
			PublicKey  []byte
		}
	}
	raw, err := os.ReadFile(filepath.Join(r.stateDir, "backend-"+udid+".json"))
	if err != nil || json.Unmarshal(raw, &idf) != nil || len(idf.Hosts) != 1 ||
		idf.Hosts[0].Identifier != self.Identifier || !bytes.Equal(idf.Hosts[0].PublicKey, self.PublicKey) {
		t.Fatalf("backend's paired hosts %+v (%v); go-ios is %s %x", idf.Hosts, err, self.Identifier, self.PublicKey)
	}
	// Second run: pair-verify with go-ios's stored identity.
	check("after verify", runGoIOS(t, bin, udid, records))

	// The network path: browse _remotepairing._tcp on the client's link,
	// pair over RPPairing, tunnel (iosmux's own host side: go-ios v1.3.2
	// pairs only over RSD).
	ctx := testCtx(t)
	list, err := mdns.Browse(ctx, mdns.BrowseConfig{Interface: clientIf, Service: mdns.ServiceRemotePairing, MaxInstances: 1})
	if err != nil || len(list) != 1 || len(list[0].Addrs) == 0 {
		t.Fatalf("_remotepairing._tcp on %s: %+v %v", clientIf, list, err)
	}
	in := list[0]
	if in.TXT()["model"] != r.device.Properties.String("ProductType") || in.TXT()["identifier"] == "" || in.TXT()["authTag"] == "" {
		t.Errorf("_remotepairing._tcp TXT %v", in.Text)
	}
	addr := net.JoinHostPort(in.Addrs[0].String(), strconv.Itoa(int(in.Port)))
	store := pairing.RecordStore{Dir: t.TempDir()}
	if _, err := pairing.Pair(ctx, &pairing.PairConfig{
		Host:  pairing.ClientConfig{HostName: "iosmux-interop"},
		Store: store,
		Dial: func(ctx context.Context) (pairing.Transport, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return pairing.NewRPPairing(nc), nil
		},
	}); err != nil {
		t.Fatalf("network pairing with the backend at %s: %v", addr, err)
	}
	var ns *utun.Netstack
	tn, err := establish.Establish(ctx, discovery.Event{Source: discovery.SourceRemotePairing, Addr: netip.MustParseAddrPort(addr)}, establish.Options{UDID: udid, Records: store, HostName: "iosmux-interop",
		NewTUN: func(p tunnel.Params) (tun.Device, error) {
			var err error
			ns, err = utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
			return ns, err
		}})
	if err != nil {
		t.Fatalf("network tunnel through the backend: %v", err)
	}
	defer tn.Close()
	nc, err := ns.DialContext(ctx, "tcp", tn.RSD().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: mustUUID(t)})
	if err != nil {
		t.Fatalf("RSD through the network tunnel: %v", err)
	}
	if c.Handshake.Device().UDID != udid {
		t.Errorf("RSD through the network tunnel: UDID %s", c.Handshake.Device().UDID)
	}
	c.Close()

	if st := r.dev.Stats(); st.PairSetups != 0 || st.Verifies != 0 || st.Reattaches != 0 {
		t.Errorf("the device saw pairing or a peer change: %+v", st)
	}
}

func mustUUID(t *testing.T) xpc.UUID {
	u, err := xpc.NewRandomUUID(nil)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
