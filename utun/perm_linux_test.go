package utun

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckKernel: the answer follows CAP_NET_ADMIN, not the uid: root
// without the capability cannot, an unprivileged user given it as an
// ambient capability (what the systemd unit does) can, without it cannot;
// and a /dev/net/tun the user may not open is named as the reason. Each
// child runs in a mount namespace of its own whose /dev/net/tun is a node
// of the mode the case wants (0666 as most distributions make it; this
// machine's own may be root's alone), so nothing here changes.
func TestCheckKernel(t *testing.T) {
	if os.Getenv("IOSMUX_UTUN_CAPCHECK") != "" {
		if err := CheckKernel(); err != nil {
			os.Stdout.WriteString("cannot: " + err.Error() + "\n")
		} else {
			os.Stdout.WriteString("can\n")
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CI runs as root) to drop a capability, change user and mount a device node")
	}
	if err := CheckKernel(); err != nil {
		t.Fatalf("root: %v", err)
	}
	// A copy of this test binary every user may run.
	dir, err := os.MkdirTemp("", "capcheck-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "utun.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	self := []string{bin, "-test.run=^TestCheckKernel$", "-test.count=1"}
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
	withCap := append(append([]string{}, nobody...), "--inh-caps=+net_admin", "--ambient-caps=+net_admin")
	dropCap := []string{"setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"}
	tests := []struct {
		name string
		mode string // of the namespace's /dev/net/tun
		argv []string
		want string // "can", or text of the reason
	}{
		{"root", "666", nil, "can"},
		{"root without CAP_NET_ADMIN", "666", dropCap, "CAP_NET_ADMIN"},
		{"nobody with ambient CAP_NET_ADMIN", "666", withCap, "can"},
		{"nobody", "666", nobody, "CAP_NET_ADMIN"},
		{"nobody with CAP_NET_ADMIN, /dev/net/tun root's", "600", withCap, "mode 0666"},
	}
	for i, tt := range tests {
		node := filepath.Join(dir, "tun"+string(rune('a'+i)))
		argv := []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
			`mknod -m "$1" "$2" c 10 200 && mount --bind "$2" /dev/net/tun && shift 2 && exec "$@"`, "sh", tt.mode, node}
		argv = append(argv, tt.argv...)
		if len(tt.argv) > 0 {
			argv = append(argv, "--")
		}
		argv = append(argv, self...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "IOSMUX_UTUN_CAPCHECK=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tt.name, err, out)
		}
		got := strings.SplitN(string(out), "\n", 2)[0]
		if tt.want == "can" && got != "can" || tt.want != "can" && (!strings.HasPrefix(got, "cannot") || !strings.Contains(got, tt.want)) {
			t.Errorf("%s: %q, want %s", tt.name, got, tt.want)
		}
	}
}
