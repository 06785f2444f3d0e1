package sim_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTunneldUnprivilegedKernelTUN runs the real binary the way
// dist/iosmux-tunneld.service does: as an unprivileged user (nobody)
// whose only privilege is the ambient CAP_NET_ADMIN. tunneld must see it
// may create kernel TUNs (the capability, not uid 0), and a simulated
// iPhone's tunnel must come up on a kernel interface. It runs in a
// network namespace of its own (unshare -n), so nothing touches this
// machine's network, nor its /dev.
func TestTunneldUnprivilegedKernelTUN(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CI runs as root) to drop to nobody with one capability")
	}
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (util-linux): %v", tool, err)
		}
	}
	bin, err := buildIosmux()
	if err != nil {
		t.Fatalf("build iosmux: %v", err)
	}
	os.Chmod(filepath.Dir(bin), 0o755)
	state, err := os.MkdirTemp("", "iosmux-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	os.Chmod(state, 0o755)
	if err := os.Chown(state, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Minute)
	defer cancel()
	// A mount namespace whose /dev/net/tun is mode 0666, as most
	// distributions make it (this machine's may be root's alone).
	node := filepath.Join(state, "tun")
	cmd := exec.CommandContext(ctx, "unshare", "-n", "-m", "--propagation", "private", "--",
		"sh", "-c", `mknod -m 666 "$1" c 10 200 && mount --bind "$1" /dev/net/tun && shift && exec "$@"`, "sh", node,
		"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+net_admin", "--ambient-caps=+net_admin", "--",
		bin, "tunneld", "--simulate", "1", "--port", "0", "--state-dir", state, "--pair-records", filepath.Join(state, "records"))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + state}
	errs := &promptWriter{}
	cmd.Stderr = errs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	up := regexp.MustCompile(`tunnel up +\S+ +--rsd \S+ \d+ +\(([^,]+), usbmux-`)
	sc := bufio.NewScanner(stdout)
	var iface string
	for sc.Scan() {
		if m := up.FindStringSubmatch(sc.Text()); m != nil {
			iface = m[1]
			break
		}
	}
	if iface == "" {
		t.Fatalf("no tunnel came up; stderr:\n%s", errs.String())
	}
	if strings.HasPrefix(iface, "userspace") || strings.Contains(errs.String(), "using --userspace") {
		t.Fatalf("tunneld fell back to userspace with CAP_NET_ADMIN (interface %q):\n%s", iface, errs.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		for sc.Scan() {
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Errorf("tunneld after SIGTERM: %v\n%s", err, errs.String())
	}
}
