package pairing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/grandcat/zeroconf"

	"github.com/iosmux/iosmux/interop/internal/netns"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/xpc"
)

// go-ios v1.3.2 reaches a device only through its public tunnel API
// (run by goiospair/, a module of its own because go-ios needs an older
// gvisor than iosmux), which
// finds the device by browsing mDNS for _remoted._tcp on every interface,
// checks the UDID over RSD, then pairs (or verifies) over the RemoteXPC
// tunnel service and opens a TLS-PSK tunnel on a kernel TUN. So the test
// runs in a network namespace of its own (the test binary re-executed with
// CLONE_NEWNET): a veth pair links "ios0", where our simulated device lives
// (RSD, the tunnel service, an mDNS responder, the tunnel listener), and
// "mac0"; nothing leaves the namespace.

const (
	netnsEnv   = "IOSMUX_PAIRING_GOIOS_NETNS"
	deviceIf   = "ios0"
	hostIf     = "mac0"
	deviceAddr = "fe80::1"
	hostAddr   = "fe80::2"
)

func TestGoIOSRemotePairing(t *testing.T) {
	if os.Getenv(netnsEnv) != "" {
		goiosInNetns(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace (CI runs as root)")
	}
	// Built out here, where a cold build may take its time.
	bin := buildGoIOSPair(t)
	netns.RunTest(t, "TestGoIOSRemotePairing", 4*time.Minute, netnsEnv+"="+bin)
}

// setupNetns brings up lo and the veth pair with fixed link-local addresses
// (no DAD, so they are usable at once).
func setupNetns(t *testing.T) {
	netns.Link(t, deviceIf, deviceAddr, hostIf, hostAddr)
}

func goiosInNetns(t *testing.T) {
	setupNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var ev events
	tunnelLn, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	serveTunnel(t, tunnelLn)
	cfg := &pairing.ServerConfig{
		Identity:  simIdentity(),
		Handshake: simHandshake(),
		Mode:      pairing.ModeTrust,
		Consent: func(context.Context, string) (bool, error) {
			ev.mu.Lock()
			ev.consents++
			ev.mu.Unlock()
			return true, nil
		},
		CreateListener: func(_ context.Context, host string, req pairing.ListenerRequest) (*pairing.Listener, error) {
			ev.mu.Lock()
			ev.listeners = append(ev.listeners, req)
			ev.mu.Unlock()
			if req.Transport != pairing.TransportTCP {
				return nil, fmt.Errorf("transport %q not served", req.Transport)
			}
			tunnelKeys <- req.Key
			return &pairing.Listener{Port: tunnelLn.Addr().(*net.TCPAddr).Port}, nil
		},
	}
	ev.hook(cfg)
	dev, err := pairing.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svcLn, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	server(t, svcLn, func(ctx context.Context, nc net.Conn) {
		if err := dev.ServeXPC(ctx, nc, nil); err != nil {
			t.Logf("device: %v", err)
		}
	})

	props := rsd.ExampleProperties()
	props.Set("UniqueDeviceID", xpc.String(simUDID))
	rs, err := rsd.NewServer(rsd.ServerConfig{Properties: props, Services: []rsd.Service{{
		Name: pairing.TunnelServiceName, Port: uint16(svcLn.Addr().(*net.TCPAddr).Port),
		Entitlement: "com.apple.dt.coredevice.tunnelservice.client",
		Properties:  xpc.NewDict("ServiceVersion", xpc.Int64(2), "UsesRemoteXPC", xpc.Bool(true)),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	// go-ios finds the device by mDNS but then dials RSD at the fixed port
	// 58783 (ios.NewWithAddrDevice), as on a real USB link.
	rsdLn, err := net.Listen("tcp", "[::]:58783")
	if err != nil {
		t.Fatal(err)
	}
	rsdCtx, rsdCancel := context.WithCancel(context.Background())
	rsdDone := make(chan error, 1)
	go func() { rsdDone <- rs.Serve(rsdCtx, rsdLn) }()
	defer func() { rsdCancel(); <-rsdDone }()

	ifc, err := net.InterfaceByName(deviceIf)
	if err != nil {
		t.Fatal(err)
	}
	mdns, err := zeroconf.RegisterProxy("iosmux-sim", "_remoted._tcp", "local.", rsdLn.Addr().(*net.TCPAddr).Port,
		"iosmux-sim", []string{deviceAddr}, []string{"UUID=" + rs.UUID().String()}, []net.Interface{*ifc})
	if err != nil {
		t.Fatalf("mDNS responder: %v", err)
	}
	defer mdns.Shutdown()

	records := t.TempDir()
	bin := os.Getenv(netnsEnv)

	// First run: go-ios's verify fails (unknown host), it pairs (Trust),
	// asks for a listener on the pair-setup channel and opens the tunnel.
	runGoIOSPair(ctx, t, bin, records)
	self, _, err := pairing.ReadGoIOS(records)
	if err != nil {
		t.Fatalf("reading go-ios's own records: %v", err)
	}
	paired, verified, listeners, consents := ev.snapshot()
	if len(paired) != 1 || paired[0].Identifier != self.Identifier || !bytes.Equal(paired[0].PublicKey, self.PublicKey) {
		t.Fatalf("device paired %+v; go-ios identity %s %x", paired, self.Identifier, self.PublicKey)
	}
	if consents != 1 || len(verified) != 0 || len(listeners) != 1 {
		t.Errorf("after pairing: consents %d, verified %v, listeners %d", consents, verified, len(listeners))
	}

	// Second run: pair-verify succeeds with go-ios's stored identity; no
	// Trust dialog.
	runGoIOSPair(ctx, t, bin, records)
	_, verified, listeners, consents = ev.snapshot()
	if consents != 1 || len(verified) != 1 || verified[0] != self.Identifier {
		t.Errorf("after verify: consents %d, verified %v", consents, verified)
	}
	if len(listeners) != 2 || len(listeners[1].Key) != 32 {
		t.Errorf("listener requests %+v", listeners)
	}

	// go-ios's records, imported, verify from our host role too.
	store := pairing.RecordStore{Dir: t.TempDir()}
	if _, err := pairing.ImportGoIOS(records, store, []string{simUDID}); err != nil {
		t.Fatal(err)
	}
	svcAddr := net.JoinHostPort(deviceAddr+"%"+hostIf, strconv.Itoa(svcLn.Addr().(*net.TCPAddr).Port))
	res, err := pairing.Pair(ctx, &pairing.PairConfig{
		Host:  pairing.ClientConfig{HostName: "iosmux-interop"},
		Store: store,
		Dial: func(ctx context.Context) (pairing.Transport, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", svcAddr)
			if err != nil {
				return nil, err
			}
			c, err := xpc.Client(ctx, nc, nil)
			if err != nil {
				return nil, err
			}
			return pairing.NewXPC(c), nil
		},
	})
	if err != nil || !res.AlreadyPaired {
		t.Errorf("our host with go-ios's imported record: %+v, %v", res, err)
	}
}

// tunnelKeys passes each createListener PSK to the tunnel listener.
var tunnelKeys = make(chan []byte, 4)

var (
	tunnelServer = netip.MustParseAddr("fd11:2233:4455::1")
	tunnelClient = netip.MustParseAddr("fd11:2233:4455::2")
)

// serveTunnel plays the device end of the TCP tunnel: TLS-PSK with the key
// of the latest createListener, then the CDTunnel handshake; packets from
// the host are drained.
func serveTunnel(t *testing.T, ln net.Listener) {
	server(t, ln, func(ctx context.Context, nc net.Conn) {
		var psk []byte
		select {
		case psk = <-tunnelKeys:
		case <-ctx.Done():
			return
		}
		tc := tlspsk.Server(nc, &tlspsk.Config{PSK: psk, DisableExtendedMasterSecret: true})
		defer tc.Close()
		if err := tc.HandshakeContext(ctx); err != nil {
			t.Errorf("tunnel TLS-PSK: %v", err)
			return
		}
		if err := cdtunnelServer(tc); err != nil {
			t.Errorf("tunnel CDTunnel: %v", err)
			return
		}
		io.Copy(io.Discard, tc)
	})
}

// buildGoIOSPair builds the go-ios client of goiospair/.
func buildGoIOSPair(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "goiospair")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testenv.ModuleDir(), "pairing", "goiospair")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the go-ios client: %v\n%s", err, out)
	}
	return bin
}

// runGoIOSPair runs go-ios once and checks the tunnel it reports.
func runGoIOSPair(ctx context.Context, t *testing.T, bin, records string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, simUDID, records)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go-ios: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var tun struct {
		Address string `json:"address"`
		RsdPort int    `json:"rsdPort"`
		UDID    string `json:"udid"`
	}
	// go-ios prints each mDNS instance name to stdout before our JSON.
	out := stdout.Bytes()
	out = out[max(0, bytes.LastIndexByte(out, '{')):]
	if err := json.Unmarshal(out, &tun); err != nil {
		t.Fatalf("go-ios output %q: %v", stdout.String(), err)
	}
	if tun.Address != tunnelServer.String() || tun.RsdPort != 58783 || tun.UDID != simUDID {
		t.Errorf("go-ios tunnel %+v", tun)
	}
}

// cdtunnelServer answers the CDTunnel handshake (tunnel.md §2) the way the
// device does; written out here so this module need not build the tunnel
// package's TUN back ends.
func cdtunnelServer(rw io.ReadWriter) error {
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(rw, hdr); err != nil {
		return err
	}
	if string(hdr[:8]) != "CDTunnel" {
		return fmt.Errorf("magic %q", hdr[:8])
	}
	body := make([]byte, int(hdr[8])<<8|int(hdr[9]))
	if _, err := io.ReadFull(rw, body); err != nil {
		return err
	}
	var req struct {
		Type string `json:"type"`
		MTU  int    `json:"mtu"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Type != "clientHandshakeRequest" {
		return fmt.Errorf("request %q: %v", body, err)
	}
	resp, _ := json.Marshal(map[string]any{
		"type":             "serverHandshakeResponse",
		"clientParameters": map[string]any{"address": tunnelClient.String(), "netmask": "ffff:ffff:ffff:ffff::", "mtu": req.MTU},
		"serverAddress":    tunnelServer.String(),
		"serverRSDPort":    58783,
	})
	frame := append([]byte("CDTunnel"), byte(len(resp)>>8), byte(len(resp)))
	_, err := rw.Write(append(frame, resp...))
	return err
}
