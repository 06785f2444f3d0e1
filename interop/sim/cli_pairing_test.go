package sim_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
)

// The acceptance for a new iPhone set up from the CLI alone, run
// with the real iosmux binary against simulated devices that were never
// paired, and cross-checked with libimobiledevice (which reads the pair
// record iosmux leaves in usbmuxd, and leaves one iosmux must accept).

var buildIosmux = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "iosmux-cli-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "iosmux")
	// In the main module: the command's own dependencies (cobra) are not
	// in this module's go.mod.
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/iosmux")
	cmd.Dir = testenv.RepoDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return bin, nil
})

// cli runs iosmux commands against one fleet with private record and
// state folders.
type cli struct {
	t       *testing.T
	bin     string
	f       *sim.Fleet
	records string
	state   string
}

func newCLI(t *testing.T, f *sim.Fleet) *cli {
	t.Helper()
	bin, err := buildIosmux()
	if err != nil {
		t.Fatalf("build iosmux: %v", err)
	}
	return &cli{t: t, bin: bin, f: f, records: t.TempDir(), state: t.TempDir()}
}

func (c *cli) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS=UNIX:"+c.f.UsbmuxSocket(),
		"IOSMUX_PAIR_RECORDS="+c.records, "IOSMUX_STATE_DIR="+c.state, "HOME="+c.state)
	return cmd
}

// run runs a command to its end; onPrompt, if set, is called once when
// the Trust prompt shows on stdout or stderr (the simulated user taps
// then).
func (c *cli) run(onPrompt func(), args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(c.t), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, args...)
	once := new(sync.Once)
	out := &promptWriter{onPrompt: onPrompt, once: once}
	errs := &promptWriter{onPrompt: onPrompt, once: once}
	cmd.Stdout, cmd.Stderr = out, errs
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String(), errs.String()
		}
		c.t.Fatalf("iosmux %v: %v", args, err)
	}
	return 0, out.String(), errs.String()
}

// promptWriter watches a stream for the Trust prompt.
type promptWriter struct {
	mu       sync.Mutex
	b        bytes.Buffer
	onPrompt func()
	once     *sync.Once
}

const trustPrompt = "Tap Trust on the iPhone"

func (w *promptWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if w.onPrompt != nil && strings.Contains(w.b.String(), trustPrompt) {
		w.once.Do(w.onPrompt)
	}
	return len(p), nil
}

func (w *promptWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// startTunnel runs start-tunnel --script-mode until it prints its
// address, checks that the trusted RSD there is the device, then
// interrupts it and expects a clean exit.
func (c *cli) startTunnel(d *sim.Device, onPrompt func(), args ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(c.t), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, append([]string{"start-tunnel", "--userspace", "--script-mode"}, args...)...)
	errs := &promptWriter{onPrompt: onPrompt, once: new(sync.Once)}
	cmd.Stderr = errs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		c.t.Fatalf("start-tunnel %v printed no address: %v\n%s", args, err, errs.String())
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		c.t.Fatalf("start-tunnel --script-mode printed %q", line)
	}
	nc, err := net.Dial("tcp", net.JoinHostPort(f[0], f[1]))
	if err != nil {
		c.t.Fatal(err)
	}
	rc, err := rsd.NewClient(ctx, nc, nil)
	if err != nil {
		c.t.Fatalf("trusted RSD through start-tunnel %v: %v", args, err)
	}
	if got := rc.Handshake.Device().UDID; got != d.UDID() {
		c.t.Errorf("start-tunnel %v reached device %q, want %q", args, got, d.UDID())
	}
	rc.Close()
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		c.t.Errorf("start-tunnel %v after SIGINT: %v\n%s", args, err, errs.String())
	}
}

// TestCLIAutopair: info and start-tunnel against never-paired devices pair
// them (the prompt shows, the user taps Trust) and succeed; with Trust
// denied they exit non-zero with the denial; libimobiledevice accepts the
// pairing iosmux made, and iosmux the one libimobiledevice made.
func TestCLIAutopair(t *testing.T) {
	f := startFleet(t, sim.FleetConfig{Count: 4, Profile: sim.MustProfile("18.2"), Trust: sim.TrustPending})
	c := newCLI(t, f)
	devs := f.Devices()

	// info: the prompt, the tap, the value.
	d := devs[0]
	code, out, errs := c.run(func() { d.SetTrust(sim.TrustAccept) }, "info", "--udid", d.UDID(), "--key", "SerialNumber")
	if code != 0 || strings.TrimSpace(out) != d.Identity().SerialNumber || !strings.Contains(errs, trustPrompt) {
		t.Fatalf("info on a new device: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if n := d.Stats().TrustPrompts; n != 1 {
		t.Errorf("info: %d Trust dialogs, want 1", n)
	}
	// libimobiledevice uses the record iosmux left in usbmuxd.
	if out, errs, err := idevice(t, f, "idevicepair", "-u", d.UDID(), "validate"); err != nil || !strings.Contains(out, "SUCCESS") {
		t.Errorf("idevicepair validate after iosmux info paired: %v\n%s%s", err, out, errs)
	}
	if out, _, err := idevice(t, f, "ideviceinfo", "-u", d.UDID(), "-k", "SerialNumber"); err != nil || strings.TrimSpace(out) != d.Identity().SerialNumber {
		t.Errorf("ideviceinfo with iosmux's pairing = %q, %v", out, err)
	}
	// A second info asks nothing.
	if code, _, errs := c.run(nil, "info", "--udid", d.UDID(), "--key", "SerialNumber"); code != 0 || strings.Contains(errs, trustPrompt) || d.Stats().TrustPrompts != 1 {
		t.Errorf("info when paired: exit %d, stderr %q, %d dialogs", code, errs, d.Stats().TrustPrompts)
	}

	// start-tunnel: the same, then a tunnel whose RSD answers.
	d = devs[1]
	c.startTunnel(d, func() { d.SetTrust(sim.TrustAccept) }, "--udid", d.UDID())
	if n := d.Stats().TrustPrompts; n != 1 {
		t.Errorf("start-tunnel: %d Trust dialogs, want 1", n)
	}

	// Don't Trust: both fail, exit 1, and say so.
	d = devs[2]
	d.SetTrust(sim.TrustDeny)
	for _, args := range [][]string{
		{"info", "--udid", d.UDID()},
		{"start-tunnel", "--udid", d.UDID(), "--userspace"},
	} {
		code, out, errs := c.run(nil, args...)
		if code != 1 || !strings.Contains(errs, "Don't Trust was tapped") || !strings.Contains(errs, d.UDID()) || out != "" {
			t.Errorf("iosmux %s with Trust denied: exit %d, stdout %q, stderr %q", args[0], code, out, errs)
		}
	}

	// idevicepair's pairing is iosmux's too; iosmux's unpair is
	// libimobiledevice's.
	d = devs[3]
	d.SetTrust(sim.TrustAccept)
	if out, errs, err := idevice(t, f, "idevicepair", "-u", d.UDID(), "pair"); err != nil || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("idevicepair pair: %v\n%s%s", err, out, errs)
	}
	d.SetTrust(sim.TrustDeny)
	if code, out, errs := c.run(nil, "lockdown", "validate", "--udid", d.UDID()); code != 0 || !strings.Contains(out, "SUCCESS") {
		t.Errorf("iosmux lockdown validate of idevicepair's pairing: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs := c.run(nil, "lockdown", "unpair", "--udid", d.UDID()); code != 0 || !strings.Contains(out, "SUCCESS") {
		t.Errorf("iosmux lockdown unpair: exit %d, %q %q", code, out, errs)
	}
	if out, _, err := idevice(t, f, "idevicepair", "-u", d.UDID(), "validate"); err == nil || strings.Contains(out, "SUCCESS") {
		t.Errorf("idevicepair validate after iosmux unpaired: %v, %q", err, out)
	}
}

// TestCLIPairUSB: 'iosmux pair' over USB on a never-paired device makes
// the classic pairing (one Trust dialog) and the RemotePairing one over
// the lockdown service (no dialog); the record then opens tunnels over the
// USB-NCM stand-in (untrusted RSD on loopback) and over network pairing,
// with no new pair-setup and no dialog.
func TestCLIPairUSB(t *testing.T) {
	f := startFleet(t, sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), Loopback: true, Trust: sim.TrustPending})
	c := newCLI(t, f)
	d := f.Devices()[0]
	code, out, errs := c.run(func() { d.SetTrust(sim.TrustAccept) }, "pair", "--udid", d.UDID())
	if code != 0 || !strings.Contains(out, trustPrompt) || !strings.Contains(out, "Paired with") {
		t.Fatalf("iosmux pair over USB: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	rec := filepath.Join(c.records, "remote_"+d.UDID()+".plist")
	if st, err := os.Stat(rec); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("RemotePairing record %s: %v %v", rec, st, err)
	}
	if st := d.Stats(); st.TrustPrompts != 1 || st.PairSetups != 1 {
		t.Fatalf("after pair: %d Trust dialogs, %d pair-setups; want 1 and 1", st.TrustPrompts, st.PairSetups)
	}

	d.SetTrust(sim.TrustDeny) // no dialog may be needed from here on
	ep := d.Endpoints()
	rsdHost, rsdPort, _ := net.SplitHostPort(ep.UntrustedRSD)
	rpHost, rpPort, _ := net.SplitHostPort(ep.NetworkPairing)
	c.startTunnel(d, nil, "--connection", "usb", "--rsd", rsdHost, rsdPort)
	c.startTunnel(d, nil, "--connection", "wifi", "--remotepairing", rpHost, rpPort, "--udid", d.UDID())
	if st := d.Stats(); st.TrustPrompts != 1 || st.PairSetups != 1 || st.Verifies < 2 {
		t.Errorf("after both tunnels: %d Trust dialogs, %d pair-setups, %d verifies; want 1, 1, ≥2", st.TrustPrompts, st.PairSetups, st.Verifies)
	}
}
