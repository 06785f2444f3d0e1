package atomicfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.plist")
	if err := Write(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new contents"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "new contents" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 whatever the umask", st.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("folder holds %v, want the file alone", ents)
	}
	if err := Write(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Errorf("empty write left %q", b)
	}
}

func TestWriteMissingFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("without MkdirAll: %v, want not-exist", err)
	}
	if err := Write(p, []byte("x"), 0o600, MkdirAll(0o700)); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("folder %v, %v", st, err)
	}
}

func TestNoReplace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "id")
	if err := Write(p, []byte("first"), 0o600, NoReplace()); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("second"), 0o600, NoReplace()); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second NoReplace write: %v, want exist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "first" {
		t.Errorf("file holds %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("folder holds %v, want the file alone", ents)
	}
}

// TestNoReplaceRace: of many writers racing to create one file, exactly
// one wins and the file holds its data, whole.
func TestNoReplaceRace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "id")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = Write(p, bytes.Repeat([]byte{byte('a' + i)}, 4096), 0o600, NoReplace()) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both created the file", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	b, _ := os.ReadFile(p)
	if !bytes.Equal(b, bytes.Repeat([]byte{byte('a' + winner)}, 4096)) {
		t.Errorf("file does not hold the winner's data whole (%d bytes)", len(b))
	}
}

func TestOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("chown needs root (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "new")
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("x"), 0o600, MkdirAll(0o700), WithOwner(&Owner{UID: 4242, GID: 4343})); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir, p} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 4242 || sys.Gid != 4343 {
			t.Errorf("%s owned by %d:%d", path, sys.Uid, sys.Gid)
		}
	}
}

const childEnv = "IOSMUX_ATOMICFILE_WRITER_CHILD"

// TestWriterChild is the child process of TestKilledWriteKeepsOld: it
// starts replacing the file and stops forever halfway through.
func TestWriterChild(t *testing.T) {
	p := os.Getenv(childEnv)
	if p == "" {
		return // only meaningful as the child
	}
	testHookMidWrite = func() {
		os.Stdout.WriteString("MID\n")
		select {}
	}
	Write(p, bytes.Repeat([]byte("new"), 1000), 0o600)
	t.Fatal("Write returned in the child")
}

// TestKilledWriteKeepsOld kills a process in the middle of a Write: the
// old contents are intact, and the next Write succeeds.
func TestKilledWriteKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "remote_X.plist")
	if err := Write(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriterChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+p)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "MID\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, %v", line, err)
	}
	// The temporary file holds half of the new contents now; it is
	// hidden and does not end in the target's extension.
	tmps, _ := filepath.Glob(filepath.Join(dir, ".remote_X.plist.tmp-*"))
	if len(tmps) != 1 {
		t.Errorf("temporary files: %v", tmps)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if b, err := os.ReadFile(p); err != nil || string(b) != "old" {
		t.Fatalf("after the kill: %q, %v", b, err)
	}
	if err := Write(p, []byte("next"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "next" {
		t.Errorf("after the next write: %q", b)
	}
}

func BenchmarkWrite(b *testing.B) {
	p := filepath.Join(b.TempDir(), "f")
	data := []byte(fmt.Sprintf("%0512d", 0))
	for b.Loop() {
		if err := Write(p, data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWriteFunc: streamed contents land whole; a failing writer leaves
// the old file and no temporary behind.
func TestWriteFunc(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "archive.tar")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("device went away")
	err := WriteFunc(p, 0o600, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteFunc = %v, want the writer's error", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("after a failed write the file holds %q", b)
	}
	if err := WriteFunc(p, 0o640, func(w io.Writer) error {
		_, err := io.Copy(w, strings.NewReader(strings.Repeat("x", 1<<20)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Size() != 1<<20 || fi.Mode().Perm() != 0o640 {
		t.Errorf("file %d bytes, mode %v", fi.Size(), fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}
