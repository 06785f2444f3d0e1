package afc

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
)

func writeTree(t *testing.T, dir string) {
	t.Helper()
	files := map[string]int{"a.txt": 10, "sub/b.bin": 300_000, "sub/deeper/c": 0, "sub/deeper/d": 70_001, "e": 1 << 20}
	for name, size := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		data := make([]byte, size)
		io.ReadFull(testkit.Rand(uint64(size)+uint64(len(name))), data)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	os.Symlink("sub/b.bin", filepath.Join(dir, "link"))
}

// TestPushPull: a folder pushed and pulled back is the same tree, bytes,
// empty folders and links included; progress reaches the totals.
func TestPushPull(t *testing.T) {
	root := newTree(t)
	c := pair(t, ServerConfig{Root: root}, &ClientConfig{ChunkSize: 64 << 10, Window: 4})
	ctx := ctxT(t)
	src := filepath.Join(t.TempDir(), "tree")
	writeTree(t, src)
	var mu sync.Mutex
	var last Progress
	st, err := c.Push(ctx, src, "/Downloads", TransferConfig{Parallel: 3, Progress: func(p Progress) { mu.Lock(); last = p; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	want := int64(10 + 300_000 + 70_001 + 1<<20)
	if st.Files != 5 || st.Links != 1 || st.Bytes != want || last.Bytes != want || last.TotalBytes != want || last.Files != 5 || last.TotalFiles != 5 {
		t.Errorf("push stats %+v, last progress %+v", st, last)
	}
	// Into the existing folder, under its own name.
	if hashTree(t, filepath.Join(root, "Downloads", "tree")) != hashTree(t, src) {
		t.Fatal("the device's copy differs from the source")
	}
	dst := t.TempDir()
	st, err = c.Pull(ctx, "/Downloads/tree", dst, TransferConfig{Parallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 5 || st.Bytes != want || st.Links != 1 || st.Dirs != 4 {
		t.Errorf("pull stats %+v", st)
	}
	if hashTree(t, filepath.Join(dst, "tree")) != hashTree(t, src) {
		t.Fatal("the pulled copy differs from the source")
	}
	// One file, to a new name.
	if _, err := c.Push(ctx, filepath.Join(src, "a.txt"), "/Books/renamed.txt", TransferConfig{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "x.txt")
	if _, err := c.Pull(ctx, "/Books/renamed.txt", out, TransferConfig{}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(src, "a.txt"))
	b, _ := os.ReadFile(out)
	if !bytes.Equal(a, b) {
		t.Error("single file round trip differs")
	}
}

// TestPullRefusesEscapingNames: a device listing "../x" or "a/b" as an
// entry gets an error, and nothing is written outside the destination
// ("." and ".." entries are dropped from every listing).
func TestPullRefusesEscapingNames(t *testing.T) {
	for _, name := range []string{"../evil", "a/b", "../../../../tmp/x", "x/../../y"} {
		t.Run(name, func(t *testing.T) {
			host, dev := testkit.Pipe()
			c := NewClient(host, nil)
			defer c.Close()
			go fakeDevice(dev, name)
			base := t.TempDir()
			dst := filepath.Join(base, "dst")
			os.Mkdir(dst, 0o755)
			_, err := c.Pull(context.Background(), "/d", dst, TransferConfig{})
			if err == nil || !strings.Contains(err.Error(), "refusing") {
				t.Errorf("Pull = %v", err)
			}
			if ents, _ := os.ReadDir(base); len(ents) != 1 {
				t.Errorf("the pull left %v next to the destination", ents)
			}
		})
	}
}

// fakeDevice answers: GET_FILE_INFO → a directory; READ_DIR → ".", ".."
// and name.
func fakeDevice(dev io.ReadWriteCloser, name string) {
	defer dev.Close()
	hdr := make([]byte, HeaderSize)
	dir := KV{{"st_size", "64"}, {"st_ifmt", TypeDir}}.Append(nil)
	for {
		if _, err := io.ReadFull(dev, hdr); err != nil {
			return
		}
		h, _ := ParseHeader(hdr)
		io.CopyN(io.Discard, dev, int64(h.EntireLen-HeaderSize))
		var data []byte
		switch h.Op {
		case OpGetFileInfo:
			data = dir
		case OpReadDir:
			data = []byte(".\x00..\x00" + name + "\x00")
		}
		dev.Write(Packet{Num: h.Num, Op: OpData, Data: data}.Append(nil))
	}
}

// TestPushPullConnections: over three connections, files spread and a
// large one cut into segments (some shorter than a chunk, the device
// capping its READ replies), both ways identical; progress counts files,
// not segments.
func TestPushPullConnections(t *testing.T) {
	root := newTree(t)
	scfg := ServerConfig{Root: root, MaxRead: 40_000}
	ccfg := &ClientConfig{ChunkSize: 64 << 10, Window: 3}
	c := pair(t, scfg, ccfg)
	extra := []*Client{pair(t, scfg, ccfg), pair(t, scfg, ccfg)}
	ctx := ctxT(t)
	src := filepath.Join(t.TempDir(), "tree")
	writeTree(t, src)
	cfg := TransferConfig{Extra: extra, SegmentSize: 100_000, Parallel: 2}
	var mu sync.Mutex
	var last Progress
	cfg.Progress = func(p Progress) { mu.Lock(); last = p; mu.Unlock() }
	st, err := c.Push(ctx, src, "/Downloads", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 5 || last.Files != 5 || last.Bytes != last.TotalBytes {
		t.Errorf("push stats %+v, progress %+v", st, last)
	}
	if hashTree(t, filepath.Join(root, "Downloads", "tree")) != hashTree(t, src) {
		t.Fatal("the device's copy differs")
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, "/Downloads/tree", dst, cfg); err != nil {
		t.Fatal(err)
	}
	if hashTree(t, filepath.Join(dst, "tree")) != hashTree(t, src) {
		t.Fatal("the pulled copy differs")
	}
	if last.Files != 5 {
		t.Errorf("pull progress %+v", last)
	}
}
