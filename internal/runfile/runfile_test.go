//go:build unix

package runfile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.lock")
	l, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != me {
		t.Errorf("lock file holds %q, want our pid %s", b, me)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode %o, want 600", st.Mode().Perm())
	}
	// A second holder (another open file: flock treats it as another
	// process would be treated) is refused and told who holds it.
	if _, err := TryLock(path); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), me) {
		t.Fatalf("second lock: %v; want ErrLocked naming pid %s", err, me)
	}
	if pid, held := Holder(path); !held || strconv.Itoa(pid) != me {
		t.Errorf("Holder = %d, %v", pid, held)
	}
	if err := l.Release(false); err != nil {
		t.Fatal(err)
	}
	if _, held := Holder(path); held {
		t.Error("still held after Release")
	}
	// A stale file (its holder gone) is taken over.
	l, err = TryLock(path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	if err := l.Release(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Release(true) left the file: %v", err)
	}
	l.Release(true) // idempotent
}

// TestSymlinkRefused: a link planted where the pid, lock or log file goes
// (the old $TMPDIR/iosmux-tunneld.pid attack) is refused, and its target
// is not touched.
func TestSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "tunneld.pid")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if l, err := TryLock(link); err == nil {
		l.Release(false)
		t.Error("TryLock followed a symlink")
	}
	if f, err := OpenLog(link); err == nil {
		f.Close()
		t.Error("OpenLog followed a symlink")
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Errorf("the link's target was changed: %q", b)
	}
	// A dangling link is refused too (O_CREAT would otherwise create the
	// target).
	dangling := filepath.Join(dir, "tunneld.log")
	if err := os.Symlink(filepath.Join(dir, "created-through-link"), dangling); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenLog(dangling); err == nil {
		f.Close()
		t.Error("OpenLog followed a dangling symlink")
	}
	if _, err := os.Stat(filepath.Join(dir, "created-through-link")); !os.IsNotExist(err) {
		t.Error("a file was created through a dangling link")
	}
}

func TestPrivateDir(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "iosmux")
	if err := PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("mode %o, want 700", st.Mode().Perm())
	}
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	if err := PrivateDir(open); err == nil || !strings.Contains(err.Error(), "open to other users") {
		t.Errorf("a 755 folder: %v", err)
	}
	link := filepath.Join(base, "link")
	os.Symlink(dir, link)
	if err := PrivateDir(link); err == nil {
		t.Error("a symlink to a folder was accepted")
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o700)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := PrivateDir(other); err == nil || !strings.Contains(err.Error(), "another user") {
			t.Errorf("another user's folder: %v", err)
		}
	}
}

func TestRuntimeDir(t *testing.T) {
	if got := RuntimeDir("/run/user/1000"); got != "/run/user/1000/iosmux" {
		t.Errorf("with XDG_RUNTIME_DIR: %s", got)
	}
	want := "/run/iosmux"
	if os.Geteuid() != 0 {
		want = filepath.Join(os.TempDir(), "iosmux-"+strconv.Itoa(os.Geteuid()))
	}
	if got := RuntimeDir(""); got != want {
		t.Errorf("without: %s, want %s", got, want)
	}
}
