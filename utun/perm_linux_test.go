package utun

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCanCreateKernel: the answer follows CAP_NET_ADMIN, not the uid:
// root without the capability cannot, an unprivileged user given it as an
// ambient capability (what the systemd unit does) can, without it cannot.
func TestCanCreateKernel(t *testing.T) {
	if os.Getenv("IOSMUX_UTUN_CAPCHECK") != "" {
		if CanCreateKernel() {
			os.Stdout.WriteString("can\n")
		} else {
			os.Stdout.WriteString("cannot\n")
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CI runs as root) to drop a capability from a root child")
	}
	if !CanCreateKernel() {
		t.Fatal("root without CAP_NET_ADMIN in this very process? expected it")
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
	self := []string{bin, "-test.run=^TestCanCreateKernel$", "-test.count=1"}
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
	for _, tt := range []struct {
		name string
		argv []string
		want string
	}{
		{"root", self, "can"},
		{"root without CAP_NET_ADMIN", append([]string{"setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"}, self...), "cannot"},
		{"nobody with ambient CAP_NET_ADMIN", append(append(nobody, "--inh-caps=+net_admin", "--ambient-caps=+net_admin", "--"), self...), "can"},
		{"nobody", append(append(nobody, "--"), self...), "cannot"},
	} {
		cmd := exec.Command(tt.argv[0], tt.argv[1:]...)
		cmd.Env = append(os.Environ(), "IOSMUX_UTUN_CAPCHECK=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tt.name, err, out)
		}
		if got := strings.Fields(string(out)); len(got) == 0 || got[0] != tt.want {
			t.Errorf("%s: %q, want %s", tt.name, out, tt.want)
		}
	}
}
