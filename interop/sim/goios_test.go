package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	ios "github.com/danielpaulus/go-ios/ios"

	"github.com/iosmux/iosmux/interop/internal/netns"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/sim"
)

// buildGoIOSSim builds goiossim/, go-ios's tunnel clients in a module of
// their own.
func buildGoIOSSim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "goiossim")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testenv.ModuleDir(), "sim", "goiossim")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building goiossim: %v\n%s", err, out)
	}
	return bin
}

type goiosResult struct {
	Address  string   `json:"address"`
	RsdPort  int      `json:"rsdPort"`
	UDID     string   `json:"udid"`
	RsdUDID  string   `json:"rsdUdid"`
	Services []string `json:"services"`
	Echo     bool     `json:"echo"`
}

func runGoIOSSim(t *testing.T, env []string, bin string, args ...string) goiosResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("goiossim %v: %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
	}
	// go-ios prints mDNS instance names to stdout before our JSON.
	out := stdout.Bytes()
	out = out[max(0, bytes.LastIndexByte(out, '{')):]
	var r goiosResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("goiossim output %q: %v", stdout.String(), err)
	}
	return r
}

// TestGoIOS: go-ios's usbmux and lockdown clients (`ios list`, `ios pair`,
// `ios info`) against the fleet, then its lockdown tunnel (CoreDeviceProxy,
// userspace mode) up to the trusted RSD and the echo service inside.
func TestGoIOS(t *testing.T) {
	bin := buildGoIOSSim(t)
	f := startFleet(t, sim.FleetConfig{Count: 3, Profile: sim.MustProfile("18.2")})
	t.Setenv("USBMUXD_SOCKET_ADDRESS", "unix://"+f.UsbmuxSocket())

	list, err := ios.ListDevices()
	if err != nil {
		t.Fatalf("ios list: %v", err)
	}
	var serials []string
	for _, d := range list.DeviceList {
		serials = append(serials, d.Properties.SerialNumber)
	}
	slices.Sort(serials)
	if want := udids(f); !slices.Equal(serials, want) {
		t.Fatalf("ios list = %q, want %q", serials, want)
	}

	d := f.Devices()[0]
	id := d.Identity()
	var entry ios.DeviceEntry
	for _, e := range list.DeviceList {
		if e.Properties.SerialNumber == id.UDID {
			entry = e
		}
	}
	if err := ios.Pair(entry); err != nil {
		t.Fatalf("ios pair: %v", err)
	}
	vals, err := ios.GetValues(entry)
	if err != nil {
		t.Fatalf("ios info: %v", err)
	}
	v := vals.Value
	if v.UniqueDeviceID != id.UDID || v.ProductVersion != "18.2" || v.BuildVersion != "22C152" || v.DeviceName != id.DeviceName ||
		v.SerialNumber != id.SerialNumber || v.ProductType != id.ProductType || uint64(v.UniqueChipID) != id.ECID {
		t.Errorf("ios info = %+v", v)
	}

	// The lockdown tunnel, userspace mode, with go-ios's forwarder on a
	// port we pick.
	port := freePort(t)
	r := runGoIOSSim(t, []string{"USBMUXD_SOCKET_ADDRESS=unix://" + f.UsbmuxSocket()}, bin, "lockdown", id.UDID, strconv.Itoa(port))
	ep := d.Endpoints()
	if r.Address != ep.TunnelAddress || r.RsdPort != int(ep.TrustedRSDPort) || r.RsdUDID != id.UDID || !r.Echo {
		t.Errorf("go-ios lockdown tunnel %+v; device %s:%d", r, ep.TunnelAddress, ep.TrustedRSDPort)
	}
	if !slices.Contains(r.Services, sim.LockdownTrusted) {
		t.Errorf("go-ios trusted services %v", r.Services)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

const netnsEnv = "IOSMUX_SIM_GOIOS_NETNS"

// TestGoIOSRemotePairing: go-ios's RemotePairing client finds the device by
// mDNS on its USB-NCM link, pairs over the untrusted tunnel service (Trust),
// opens a TLS-PSK tunnel on a kernel TUN and reaches the trusted RSD; a
// second run verifies with the stored identity. It runs in a network
// namespace of its own (the test binary re-executed with CLONE_NEWNET), the
// device in another, joined by the simulator's veth link.
func TestGoIOSRemotePairing(t *testing.T) {
	if bin := os.Getenv(netnsEnv); bin != "" {
		goiosPairInNetns(t, bin)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces (CI runs as root)")
	}
	bin := buildGoIOSSim(t)
	netns.RunTest(t, "TestGoIOSRemotePairing", 4*time.Minute, netnsEnv+"="+bin)
}

func goiosPairInNetns(t *testing.T, bin string) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	// go-ios dials through its new TUN at once; without this the kernel
	// keeps the TUN address tentative (DAD) for its first second and the
	// connection leaves with another source address. Only this namespace
	// is affected.
	for _, p := range []string{"/proc/sys/net/ipv6/conf/all/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad"} {
		if err := os.WriteFile(p, []byte("0"), 0); err != nil {
			t.Fatal(err)
		}
	}
	f := startFleet(t, sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), NCM: &sim.NCMConfig{}})
	d := f.Devices()[0]
	records := t.TempDir()

	// First run: no pairing yet; go-ios's verify fails, it pairs (the
	// simulated user taps Trust) and tunnels.
	r := runGoIOSSim(t, nil, bin, "pair", d.UDID(), records)
	ep := d.Endpoints()
	if r.Address != ep.TunnelAddress || r.RsdUDID != d.UDID() || !r.Echo {
		t.Errorf("go-ios tunnel after pairing %+v; device at %s", r, ep.TunnelAddress)
	}
	if st := d.Stats(); st.PairSetups != 1 || st.Sessions != 1 {
		t.Errorf("after pairing: %+v", st)
	}
	// Second run: pair-verify with go-ios's stored identity, no Trust.
	d.SetTrust(sim.TrustDeny)
	before := d.Stats().Verifies
	r = runGoIOSSim(t, nil, bin, "pair", d.UDID(), records)
	if r.RsdUDID != d.UDID() || !r.Echo {
		t.Errorf("go-ios tunnel after verify %+v", r)
	}
	if st := d.Stats(); st.PairSetups != 1 || st.Verifies <= before || st.Sessions != 2 {
		t.Errorf("after verify: %+v (verifies before %d)", st, before)
	}
}
