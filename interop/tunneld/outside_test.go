package tunneld_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/interop/internal/netns"
	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/rsd"
	"github.com/vishvananda/netlink"
)

// TestTunneldOutsideClients is issue 12's acceptance for item 3: clients
// that are not iosmux's code read pymobiledevice3's tunneld listing and get
// through to the device at the address and port listed, with tunneld in
// userspace mode, in kernel mode, and started as an unprivileged user
// (uid 65534: no CAP_NET_ADMIN, so it picks userspace mode on its own).
// The clients: go-ios v1.3.2's RSD client (pmd3client: the listed RSD's
// handshake, then RSDCheckin at the trusted lockdown port it lists),
// appium-ios-remotexpc's RSD client (pmd3_reader.mjs) and go-ios's agent
// client (goiosagent: the go-ios listing, through the userspace proxy in
// userspace mode).
//
// It also times, in the same run, how long after `iosmux tunneld` starts
// the first RSD answers through the listed address, in userspace and in
// kernel mode (docs/perf.md, tunneld section): a warm-up run pairs the
// devices, then the two modes alternate.
func TestTunneldOutsideClients(t *testing.T) {
	const env = "IOSMUX_TUNNELD_OUTSIDE_BIN"
	if dir := os.Getenv(env); dir != "" {
		outsideInNetns(t, dir)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace and to start tunneld as another user (CI runs as root)")
	}
	// Binaries an unprivileged user can run: t.TempDir's folders are 0700.
	dir, err := os.MkdirTemp("", "iosmux-outside-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct{ out, pkg, dir string }{
		// In the main module, whose go.mod lists the command's own
		// dependencies (cobra and the like).
		{"iosmux", "./cmd/iosmux", testenv.RepoDir()},
		{"goiosagent", ".", filepath.Join(testenv.ModuleDir(), "tunneld", "goiosagent")},
		{"pmd3client", "./pmd3client", filepath.Join(testenv.ModuleDir(), "tunneld", "goiosagent")},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.out, err, out)
		}
	}
	netns.RunTest(t, "TestTunneldOutsideClients", 5*time.Minute, env+"="+dir)
}

const nobody = 65534

// outsideRun is one `iosmux tunneld --simulate 2`.
type outsideRun struct {
	mode  string // "userspace", "kernel" or "unprivileged"
	state string
	cmd   *exec.Cmd
	log   string
	done  chan error
}

func startOutside(t *testing.T, bin, mode, state string) *outsideRun {
	t.Helper()
	args := []string{"--log-format", "json", "tunneld", "--simulate", "2", "--api", "pmd3,goios,appium",
		"--simulate-state", filepath.Join(state, "sim"), "--state-dir", state, "--pair-records", filepath.Join(state, "records")}
	if mode == "userspace" {
		args = append(args, "--userspace")
	}
	r := &outsideRun{mode: mode, state: state, log: filepath.Join(state, "tunneld-"+mode+".log"), done: make(chan error, 1)}
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(filepath.Join(bin, "iosmux"), args...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.Env = append(os.Environ(), "HOME="+state)
	if mode == "unprivileged" {
		// A user without CAP_NET_ADMIN: tunneld cannot create a TUN and
		// must choose userspace mode itself (no --userspace above).
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.done <- r.cmd.Wait()
		logf.Close()
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends tunneld with SIGTERM and waits for it (and so for its ports).
func (r *outsideRun) stop(t *testing.T) {
	if r.cmd.ProcessState != nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("%s tunneld after SIGTERM: %v", r.mode, err)
		}
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
		t.Errorf("%s tunneld did not stop on SIGTERM", r.mode)
	}
	if t.Failed() {
		b, _ := os.ReadFile(r.log)
		t.Logf("%s tunneld log:\n%s", r.mode, b)
	}
}

// firstAnswer waits for the first device to be listed and its RSD to
// answer a handshake at the listed address; it returns the time since
// start.
func firstAnswer(t *testing.T, start time.Time) time.Duration {
	t.Helper()
	for time.Since(start) < 90*time.Second {
		for _, es := range listing() {
			if rsdAnswers(es[0]) {
				return time.Since(start)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("no RSD answered at a listed address within 90 s")
	return 0
}

func rsdAnswers(e entry) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(e.Address, strconv.Itoa(e.Port)))
	if err != nil {
		return false
	}
	c, err := rsd.NewClient(ctx, nc, nil)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// checkOutsideClients runs the three clients against a tunneld whose two
// devices are listed.
func checkOutsideClients(t *testing.T, bin, mode string) {
	t.Helper()
	waitFor(t, "2 tunnels", func() bool { return len(listing()) == 2 })
	l := listing()
	userspace := mode != "kernel"
	for udid, es := range l {
		a, err := netip.ParseAddr(es[0].Address)
		ok := err == nil && a.Is6() // kernel: the device's tunnel address
		if userspace {
			ok = err == nil && a.Is4() && a.IsLoopback() && a != netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		if !ok {
			t.Errorf("%s: %s listed at %s", mode, udid, es[0].Address)
		}
	}

	// go-ios's RSD client at the listed address, then another listed port.
	cmd := exec.Command(filepath.Join(bin, "pmd3client"), pmd3URL)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: pmd3client (go-ios's RSD client): %v\n%s%s", mode, err, out, stderr.String())
	}
	var got map[string]struct {
		Address  string
		Port     int
		RSDUDID  string
		Services int
		Lockdown int
		Checkin  bool
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v: %s", mode, err, out)
	}
	for udid, e := range l {
		d := got[udid]
		if d.Address != e[0].Address || d.Port != e[0].Port || d.RSDUDID != udid || d.Services == 0 || d.Lockdown == 0 || !d.Checkin {
			t.Errorf("%s: go-ios at %s:%d: %+v", mode, e[0].Address, e[0].Port, d)
		}
	}
	t.Logf("%s: go-ios's RSD client: handshake at every listed address and port, RSDCheckin at the lockdown port each RSD lists (%s)", mode, out)

	// appium-ios-remotexpc's RSD client, reading the same listing.
	var reader struct {
		Devices map[string]struct {
			Services int
			Lockdown int
		}
	}
	if err := json.Unmarshal(node(t, "pmd3_reader.mjs", "49151"), &reader); err != nil {
		t.Fatal(err)
	}
	for udid := range l {
		if d := reader.Devices[udid]; d.Services == 0 || d.Lockdown == 0 {
			t.Errorf("%s: appium's RSD client for %s: %+v", mode, udid, d)
		}
	}

	// go-ios's agent client: its own listing (through go-ios's userspace
	// proxy in userspace mode).
	cmd = exec.Command(filepath.Join(bin, "goiosagent"))
	cmd.Env = append(os.Environ(), "GO_IOS_AGENT_HOST=127.0.0.1", "GO_IOS_AGENT_PORT=60105")
	if out, err = cmd.Output(); err != nil {
		t.Fatalf("%s: goiosagent: %v", mode, err)
	}
	var agent struct {
		Devices []struct {
			Tunnel struct {
				Udid         string `json:"udid"`
				UserspaceTUN bool   `json:"userspaceTun"`
			}
			RSDUDID string
			Err     string
		}
	}
	if err := json.Unmarshal(out, &agent); err != nil {
		t.Fatalf("%s: %v: %s", mode, err, out)
	}
	if len(agent.Devices) != 2 {
		t.Errorf("%s: go-ios agent read %s", mode, out)
	}
	for _, d := range agent.Devices {
		if d.Err != "" || d.RSDUDID != d.Tunnel.Udid || d.Tunnel.UserspaceTUN != userspace {
			t.Errorf("%s: go-ios agent: %+v", mode, d)
		}
	}
}

func outsideInNetns(t *testing.T, bin string) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}

	// Root, both modes, one state: the warm-up pairs the devices, then the
	// modes alternate and each start is timed to the first RSD answer at
	// a listed address.
	state := t.TempDir()
	warm := startOutside(t, bin, "userspace", state)
	firstAnswer(t, time.Now())
	checkOutsideClients(t, bin, "userspace")
	warm.stop(t)
	times := map[string][]time.Duration{}
	for range 3 {
		for _, mode := range []string{"userspace", "kernel"} {
			start := time.Now()
			r := startOutside(t, bin, mode, state)
			times[mode] = append(times[mode], firstAnswer(t, start))
			if mode == "kernel" && len(times[mode]) == 1 {
				checkOutsideClients(t, bin, "kernel")
			}
			r.stop(t)
		}
	}
	median := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	t.Logf("iosmux tunneld start → first RSD answer through the listed address (2 simulated iPhones, paired; median of %d): userspace %v, kernel %v (runs: userspace %v, kernel %v)",
		len(times["kernel"]), median(times["userspace"]).Round(time.Millisecond), median(times["kernel"]).Round(time.Millisecond),
		roundAll(times["userspace"]), roundAll(times["kernel"]))

	// An unprivileged user: uid 65534, its own state (it cannot read root's).
	ustate, err := os.MkdirTemp("", "iosmux-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ustate) })
	if err := os.Chown(ustate, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	u := startOutside(t, bin, "unprivileged", ustate)
	d := firstAnswer(t, start)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", u.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "CapEff:\t0000000000000000") {
		t.Fatalf("tunneld as uid %d still has capabilities:\n%s", nobody, status)
	}
	checkOutsideClients(t, bin, "unprivileged")
	t.Logf("unprivileged (uid %d, no capabilities, userspace chosen by tunneld): first RSD answer through the listed address %v after start (first run: lockdown pairing included)",
		nobody, d.Round(time.Millisecond))
	// (checkOutsideClients saw go-ios's listing say userspaceTun.)
	u.stop(t)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
