package tunneld_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunneld"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
)

// One lockdown key for every simulated device: RSA generation would
// dominate the tests otherwise.
var (
	keyOnce sync.Once
	key     *rsa.PrivateKey
)

func lockdownKey(t testing.TB) *rsa.PrivateKey {
	keyOnce.Do(func() {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return key
}

// fleet starts n simulated iPhones (iOS 18.2: CoreDeviceProxy, no QUIC)
// behind a usbmuxd socket, keeping their state in stateDir ("" for none).
func fleet(t testing.TB, n int, stateDir string) *sim.Fleet {
	t.Helper()
	return fleetOf(t, n, stateDir, "18.2")
}

// fleetOf is fleet with another iOS profile.
func fleetOf(t testing.TB, n int, stateDir, profile string) *sim.Fleet {
	t.Helper()
	f, err := sim.StartFleet(sim.FleetConfig{Count: n, Profile: sim.MustProfile(profile), StateDir: stateDir,
		SocketPath: shortSocket(t), LockdownKey: lockdownKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// shortSocket is a UNIX socket path under the 108-byte limit (t.TempDir
// paths can be long).
func shortSocket(t testing.TB) string {
	dir, err := os.MkdirTemp("", "tunneld-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir + "/usbmuxd"
}

type rig struct {
	d        *tunneld.Daemon
	records  string
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// daemon runs a tunneld in userspace mode with all three APIs on
// ephemeral loopback ports over the fleet's usbmuxd.
func daemon(t testing.TB, f *sim.Fleet, tweak func(*tunneld.Config)) *rig {
	t.Helper()
	addr, err := usbmux.ParseAddr("UNIX:" + f.UsbmuxSocket())
	if err != nil {
		t.Fatal(err)
	}
	records := t.TempDir()
	cfg := tunneld.Config{
		Port: -1, GoIOSPort: -1, AppiumPort: -1,
		APIs:      []string{tunneld.APIPMD3, tunneld.APIGoIOS, tunneld.APIAppium},
		Usbmux:    usbmux.NewClient(usbmux.ClientConfig{Addr: addr}),
		Userspace: true,
		Records:   pairing.RecordStore{Dir: records},
		HostName:  "tunneld-test",
		Backoff:   retry.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	d, err := tunneld.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{d: d, records: records, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *rig) stop(t testing.TB) {
	r.stopOnce.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func (r *rig) url(api, path string) string { return "http://" + r.d.Addr(api) + path }

// waitFor polls cond until it holds; the deadline only stops a hang.
func waitFor(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

var client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256}}

func get(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// pmd3Entry is one entry of pymobiledevice3's GET / listing.
type pmd3Entry struct {
	Address   string `json:"tunnel-address"`
	Port      int    `json:"tunnel-port"`
	Interface string `json:"interface"`
}

func listing(t testing.TB, r *rig) map[string][]pmd3Entry {
	t.Helper()
	code, b := get(t, r.url(tunneld.APIPMD3, "/"))
	if code != 200 {
		t.Fatalf("GET / = %d %s", code, b)
	}
	var m map[string][]pmd3Entry
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("GET / body %s: %v", b, err)
	}
	return m
}

func listed(t testing.TB, r *rig, udid string) bool {
	_, ok := listing(t, r)[udid]
	return ok
}

type goiosTunnel struct {
	Address          string `json:"address"`
	RsdPort          int    `json:"rsdPort"`
	UDID             string `json:"udid"`
	UserspaceTUN     bool   `json:"userspaceTun"`
	UserspaceTUNPort int    `json:"userspaceTunPort"`
}

func goiosTunnels(t testing.TB, r *rig) []goiosTunnel {
	t.Helper()
	code, b := get(t, r.url(tunneld.APIGoIOS, "/tunnels"))
	if code != 200 {
		t.Fatalf("GET /tunnels = %d %s", code, b)
	}
	var ts []goiosTunnel
	if err := json.Unmarshal(b, &ts); err != nil {
		t.Fatalf("GET /tunnels body %s: %v", b, err)
	}
	return ts
}

// rsdThroughProxy runs an RSD handshake with the device through go-ios's
// userspace proxy protocol (tunneld-api.md §2.5) and returns the UDID the
// device reports.
func rsdThroughProxy(t testing.TB, tun goiosTunnel) string {
	t.Helper()
	return rsdThroughProxyAs(t, tun, xpc.UUID{})
}

// rsdThroughProxyAs is rsdThroughProxy presenting host as the host's RSD
// identity (none when zero).
func rsdThroughProxyAs(t testing.TB, tun goiosTunnel, host xpc.UUID) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := proxyDial(tun.UserspaceTUNPort)(ctx, "tcp", net.JoinHostPort(tun.Address, fmt.Sprint(tun.RsdPort)))
	if err != nil {
		t.Fatalf("userspace proxy: %v", err)
	}
	rc, err := rsd.NewClient(ctx, c, &rsd.ClientConfig{HostUUID: host})
	if err != nil {
		t.Fatalf("RSD through the userspace proxy of %s: %v", tun.UDID, err)
	}
	defer rc.Close()
	return rc.Handshake.Device().UDID
}

// proxyDial reaches addresses inside a userspace tunnel through go-ios's
// userspace proxy protocol on 127.0.0.1:port (tunneld-api.md §2.5).
func proxyDial(port int) utun.DialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return nil, err
		}
		var pre [20]byte
		b16 := ap.Addr().As16()
		copy(pre[:16], b16[:])
		binary.LittleEndian.PutUint32(pre[16:], uint32(ap.Port()))
		if _, err := c.Write(pre[:]); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// ownLoopback reports whether a is a loopback address of a device's own
// (userspace mode on Linux): IPv4 127/8, not 127.0.0.1.
func ownLoopback(a string) bool {
	ip, err := netip.ParseAddr(a)
	return err == nil && ip.Is4() && ip.IsLoopback() && ip != netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// rsdAt runs an RSD handshake at a listed address and port, as a client
// that knows nothing of iosmux does, and returns the UDID the device
// reports.
func rsdAt(t testing.TB, e pmd3Entry) string {
	t.Helper()
	c := rsdClientAt(t, e)
	defer c.Close()
	return c.Handshake.Device().UDID
}

func rsdClientAt(t testing.TB, e pmd3Entry) *rsd.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(e.Address, fmt.Sprint(e.Port)))
	if err != nil {
		t.Fatalf("listed RSD %s:%d: %v", e.Address, e.Port, err)
	}
	c, err := rsd.NewClient(ctx, nc, nil)
	if err != nil {
		t.Fatalf("RSD at %s:%d: %v", e.Address, e.Port, err)
	}
	return c
}
