// Package tunneld_test runs the real `iosmux tunneld --simulate 4` and reads
// it with the clients that read pymobiledevice3's tunneld: go-ios v1.3.2's
// agent client and RSD client (goiosagent/, a module of its own because
// go-ios needs an older gvisor), appium-ios-remotexpc's TunnelApiClient and
// RSD client, and a reader of pymobiledevice3's JSON. Kernel TUNs need a
// network namespace, so the test re-executes itself with CLONE_NEWNET;
// nothing leaves it.
//
// It is also the acceptance run: four tunnels listed in
// pymobiledevice3's JSON with every RSD reachable; unplug, replug and reboot
// healed; kill -9 and restart bring the same tunnels back with every pair
// record intact; SIGTERM removes every TUN. Latencies are logged (no timed
// assertions).
package tunneld_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/interop/internal/netns"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/vishvananda/netlink"
)

const (
	netnsEnv   = "IOSMUX_TUNNELD_INTEROP_NETNS" // path of the iosmux binary
	agentEnv   = "IOSMUX_TUNNELD_GOIOSAGENT"    // path of goiosagent
	controlURL = "http://127.0.0.1:47001"
	pmd3URL    = "http://127.0.0.1:49151"
)

func TestTunneldInterop(t *testing.T) {
	if os.Getenv(netnsEnv) != "" {
		inNetns(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace (CI runs as root)")
	}
	dir := t.TempDir()
	iosmux := filepath.Join(dir, "iosmux")
	// Built in the main module, whose go.mod lists the command's own
	// dependencies (cobra and the like, which nothing here imports).
	build := exec.Command("go", "build", "-o", iosmux, "./cmd/iosmux")
	build.Dir = testenv.RepoDir()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build iosmux: %v\n%s", err, out)
	}
	agent := filepath.Join(dir, "goiosagent")
	build = exec.Command("go", "build", "-o", agent, ".")
	build.Dir = filepath.Join(testenv.ModuleDir(), "tunneld", "goiosagent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the go-ios agent client: %v\n%s", err, out)
	}
	netns.RunTest(t, "TestTunneldInterop", 5*time.Minute, netnsEnv+"="+iosmux, agentEnv+"="+agent)
}

// daemonProc is one run of `iosmux tunneld`.
type daemonProc struct {
	cmd    *exec.Cmd
	stdout *testkit.Buffer
	exited chan struct{} // closed once the process has been reaped
	err    error         // Wait's result, set before exited closes
}

func (p *daemonProc) wait() error {
	<-p.exited
	return p.err
}

func startDaemon(t *testing.T, bin, state, records, logFile string) *daemonProc {
	t.Helper()
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--log-format", "json", "tunneld", "--simulate", "4", "--api", "pmd3,goios,appium",
		"--simulate-state", filepath.Join(state, "sim"), "--state-dir", state, "--pair-records", records,
		"--simulate-control", strings.TrimPrefix(controlURL, "http://"))
	p := &daemonProc{cmd: cmd, stdout: &testkit.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		p.wait()
	})
	return p
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}

func get(url string) (int, []byte, http.Header, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

type entry struct {
	Address   string `json:"tunnel-address"`
	Port      int    `json:"tunnel-port"`
	Interface string `json:"interface"`
}

// listing is GET / of the pymobiledevice3 API; nil while it does not answer.
func listing() map[string][]entry {
	code, b, _, err := get(pmd3URL + "/")
	if err != nil || code != 200 {
		return nil
	}
	var m map[string][]entry
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 90*time.Second {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func control(t *testing.T, udid, fault string) {
	t.Helper()
	resp, err := client.Post(controlURL+"/devices/"+udid+"/"+fault, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("control %s %s: %d %s", udid, fault, resp.StatusCode, b)
	}
}

func deviceState(t *testing.T, udid string) string {
	t.Helper()
	_, b, _, err := get(controlURL + "/devices/" + udid)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		State string `json:"state"` // sim.DeviceStatus embeds sim.Endpoints
	}
	json.Unmarshal(b, &s)
	return s.State
}

// hashTree maps every regular file under dir to its SHA-256.
func hashTree(t *testing.T, dir string, keep func(string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !keep(p) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[p] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tunInterfaces(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "tun") {
			names = append(names, i.Name)
		}
	}
	return names
}

func node(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("node", append([]string{filepath.Join("tunneld", script)}, args...)...)
	cmd.Dir = testenv.ModuleDir()
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir(), "HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	return out
}

// tryPrinted runs the command tunneld printed for a newcomer to paste
// ("try it: iosmux rsd-info --tunnel UDID") with our binary: through the
// pmd3 API's listing it reaches that device's RSD inside its kernel tunnel.
func tryPrinted(t *testing.T, bin string, p *daemonProc, state string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^try it: +iosmux (rsd-info --tunnel (\S+))$`).FindStringSubmatch(p.stdout.String())
	if m == nil {
		t.Errorf("tunneld printed no 'try it: iosmux rsd-info --tunnel UDID' line:\n%s", p.stdout.String())
		return
	}
	cmd := exec.Command(bin, append(strings.Fields(m[1]), "--json", "--state-dir", state)...)
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("iosmux %s: %v", m[1], err)
		return
	}
	var h struct {
		Properties struct{ UniqueDeviceID string }
	}
	if err := json.Unmarshal(out, &h); err != nil || h.Properties.UniqueDeviceID != m[2] {
		t.Errorf("iosmux %s: device %q, %v; want %s", m[1], h.Properties.UniqueDeviceID, err, m[2])
	}
}

// pmd3Body is pymobiledevice3's GET / as FastAPI's JSONResponse writes it:
// compact separators, entries with keys in this order.
var pmd3Body = regexp.MustCompile(`^\{"[0-9A-F]{8}-[0-9A-F]{16}":\[\{"tunnel-address":"fd[0-9a-f:]+","tunnel-port":\d+,"interface":"usbmux-[0-9A-F]{8}-[0-9A-F]{16}-USB"\}\](,"[0-9A-F]{8}-[0-9A-F]{16}":\[\{"tunnel-address":"fd[0-9a-f:]+","tunnel-port":\d+,"interface":"usbmux-[0-9A-F]{8}-[0-9A-F]{16}-USB"\}\])*\}$`)

func inNetns(t *testing.T) {
	bin, agent := os.Getenv(netnsEnv), os.Getenv(agentEnv)
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	state, records := t.TempDir(), t.TempDir()
	logFile := filepath.Join(state, "tunneld.log")
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("tunneld log:\n%s", b)
		}
	}()

	p := startDaemon(t, bin, state, records, logFile)
	t.Logf("4 tunnels listed %v after starting `iosmux tunneld --simulate 4` (first run: lockdown pairing included)",
		waitFor(t, "4 tunnels", func() bool { return len(listing()) == 4 }).Round(time.Millisecond))

	// pymobiledevice3's exact JSON.
	code, raw, hdr, err := get(pmd3URL + "/")
	if err != nil || code != 200 || hdr.Get("Content-Type") != "application/json" || !pmd3Body.Match(raw) {
		t.Fatalf("GET / = %d %v %q, body %s", code, err, hdr.Get("Content-Type"), raw)
	}
	if n := len(tunInterfaces(t)); n != 4 {
		t.Errorf("%d TUN interfaces, want 4", n)
	}
	tryPrinted(t, bin, p, state)
	udids := slices.Sorted(func(yield func(string) bool) {
		for u := range listing() {
			if !yield(u) {
				return
			}
		}
	})

	t.Run("pymobiledevice3 JSON reader", func(t *testing.T) {
		var got struct {
			Raw         string
			ContentType string
			Devices     map[string]struct {
				First    string
				Entries  int
				Services int
				Lockdown int
			}
		}
		if err := json.Unmarshal(node(t, "pmd3_reader.mjs", "49151"), &got); err != nil {
			t.Fatal(err)
		}
		l := listing()
		if len(got.Devices) != 4 {
			t.Fatalf("reader saw %d devices", len(got.Devices))
		}
		for udid, d := range got.Devices {
			e := l[udid][0]
			if d.First != fmt.Sprintf("[%s]:%d", e.Address, e.Port) || d.Entries != 1 || d.Services == 0 || d.Lockdown == 0 {
				t.Errorf("%s: reader read %+v (RSD through the kernel tunnel), listing %+v", udid, d, e)
			}
		}
	})

	t.Run("go-ios agent client", func(t *testing.T) {
		cmd := exec.Command(agent)
		cmd.Env = append(os.Environ(), "GO_IOS_AGENT_HOST=127.0.0.1", "GO_IOS_AGENT_PORT=60105")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("goiosagent: %v", err)
		}
		var got struct {
			Running, Ready bool
			Err            string
			Devices        []struct {
				Tunnel struct {
					Address      string `json:"address"`
					RsdPort      int    `json:"rsdPort"`
					Udid         string `json:"udid"`
					UserspaceTUN bool   `json:"userspaceTun"`
				}
				ByUDID struct {
					Udid string `json:"udid"`
				}
				RSDUDID  string
				Services int
				Err      string
			}
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !got.Running || !got.Ready || got.Err != "" || len(got.Devices) != 4 {
			t.Fatalf("go-ios read %s", out)
		}
		l := listing()
		for _, d := range got.Devices {
			e := l[d.Tunnel.Udid]
			if d.Err != "" || len(e) != 1 || d.Tunnel.Address != e[0].Address || d.Tunnel.RsdPort != e[0].Port ||
				d.Tunnel.UserspaceTUN || d.ByUDID.Udid != d.Tunnel.Udid || d.RSDUDID != d.Tunnel.Udid || d.Services == 0 {
				t.Errorf("go-ios: %+v (listing %+v)", d, e)
			}
		}
	})

	t.Run("appium TunnelApiClient", func(t *testing.T) {
		var got struct {
			Devices          []string
			All              [][]any
			Metadata         map[string]any
			Connection       map[string]any
			RSDServices      int
			RegistryServices int
		}
		if err := json.Unmarshal(node(t, "appium_client.mjs", "42314", udids[0]), &got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Devices, udids) || len(got.All) != 4 || got.Metadata["activeTunnels"] != 4.0 {
			t.Errorf("appium read devices %v, %d tunnels, metadata %v", got.Devices, len(got.All), got.Metadata)
		}
		e := listing()[udids[0]][0]
		if got.Connection["host"] != e.Address || got.Connection["port"] != float64(e.Port) || got.RSDServices == 0 || got.RSDServices != got.RegistryServices {
			t.Errorf("appium connection %v, %d services over RSD, %d in the registry (listing %+v)", got.Connection, got.RSDServices, got.RegistryServices, e)
		}
	})

	// Healing.
	u := udids[1]
	control(t, u, "unplug")
	t.Logf("unplug: left the listing after %v", waitFor(t, "unplugged device to leave", func() bool { _, ok := listing()[u]; return !ok }).Round(time.Millisecond))
	if n := len(listing()); n != 3 {
		t.Errorf("%d listed after an unplug, want 3", n)
	}
	control(t, u, "replug")
	t.Logf("replug: listed again after %v", waitFor(t, "replugged device", func() bool { _, ok := listing()[u]; return ok }).Round(time.Millisecond))
	old := listing()[u][0]
	control(t, u, "reboot?down=1s")
	t.Logf("reboot: left after %v", waitFor(t, "rebooting device to leave", func() bool { _, ok := listing()[u]; return !ok }).Round(time.Millisecond))
	waitFor(t, "device back up", func() bool { return deviceState(t, u) == "plugged" })
	t.Logf("reboot: listed %v after the device was up again", waitFor(t, "rebooted device", func() bool { _, ok := listing()[u]; return ok }).Round(time.Millisecond))
	if e := listing()[u][0]; e.Address == old.Address {
		t.Errorf("after a reboot the tunnel still lists the old address %s", e.Address)
	}

	// kill -9 and restart: the same tunnels, every pair record intact.
	isRecord := func(p string) bool {
		return strings.HasSuffix(p, ".plist") || strings.HasSuffix(p, "remotepairing-hosts.json")
	}
	before := hashTree(t, records, isRecord)
	for k, v := range hashTree(t, filepath.Join(state, "sim"), isRecord) {
		before[k] = v
	}
	if len(before) != 8 {
		t.Errorf("%d pair records before the kill (want 4 host-side, 4 device-side): %v", len(before), before)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()
	restart := time.Now()
	p = startDaemon(t, bin, state, records, logFile)
	waitFor(t, "4 tunnels after the restart", func() bool { return len(listing()) == 4 })
	t.Logf("kill -9, restart: 4 tunnels listed again %v after the restart", time.Since(restart).Round(time.Millisecond))
	if got := slices.Sorted(func(yield func(string) bool) {
		for u := range listing() {
			if !yield(u) {
				return
			}
		}
	}); !slices.Equal(got, udids) {
		t.Errorf("after kill -9 and restart listed %v, want %v", got, udids)
	}
	after := hashTree(t, records, isRecord)
	for k, v := range hashTree(t, filepath.Join(state, "sim"), isRecord) {
		after[k] = v
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("pair record %s changed across kill -9 and restart", k)
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d pair records after the restart, %d before", len(after), len(before))
	}

	// SIGTERM: clean stop, no TUN left.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(); err != nil {
		t.Errorf("tunneld after SIGTERM: %v", err)
	}
	if n := tunInterfaces(t); len(n) != 0 {
		t.Errorf("TUN interfaces left after SIGTERM: %v", n)
	}
	if !strings.Contains(p.stdout.String(), "tunnel down") {
		t.Errorf("teardown not printed:\n%s", p.stdout.String())
	}
}
