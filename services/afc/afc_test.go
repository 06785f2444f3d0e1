package afc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// pair serves root (with cfg's other settings) and returns a client on
// an in-memory connection to it.
func pair(t testing.TB, cfg ServerConfig, ccfg *ClientConfig) *Client {
	t.Helper()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	host, dev := testkit.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), dev); dev.Close() }()
	c := NewClient(host, ccfg)
	t.Cleanup(func() {
		c.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c
}

func newTree(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"DCIM", "Downloads", "Books", "PublicStaging"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func wantStatus(t *testing.T, what string, err error, st Status) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != st {
		t.Errorf("%s: %v, want status %s (%d)", what, err, st, st)
	}
}

// TestOperations runs every operation against the device role and checks
// both the answers and the tree on disk.
func TestOperations(t *testing.T) {
	root := newTree(t)
	c := pair(t, ServerConfig{Root: root}, nil)
	ctx := ctxT(t)

	names, err := c.ReadDir(ctx, "/")
	slices.Sort(names)
	if err != nil || strings.Join(names, ",") != "Books,DCIM,Downloads,PublicStaging" {
		t.Errorf("ReadDir / = %q, %v", names, err)
	}
	// MAKE_DIR creates parents; again is fine.
	for range 2 {
		if err := c.Mkdir(ctx, "Downloads/a/b/c"); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "Downloads/a/b/c")); err != nil || !fi.IsDir() {
		t.Errorf("Mkdir left %v, %v", fi, err)
	}
	// Write, read, seek, tell, truncate, append.
	f, err := c.Open(ctx, "/Downloads/a/f.txt", ReadWriteTrunc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteContext(ctx, []byte("hello world")); err != nil {
		t.Fatal(err)
	}
	if pos, err := f.Tell(ctx); err != nil || pos != 11 {
		t.Errorf("Tell = %d, %v", pos, err)
	}
	if pos, err := f.SeekContext(ctx, 6, io.SeekStart); err != nil || pos != 6 {
		t.Errorf("Seek = %d, %v", pos, err)
	}
	buf := make([]byte, 100)
	if n, err := f.ReadContext(ctx, buf); err != nil || string(buf[:n]) != "world" {
		t.Errorf("Read = %q, %v", buf[:n], err)
	}
	if _, err := f.ReadContext(ctx, buf); err != io.EOF {
		t.Errorf("Read at the end = %v, want io.EOF", err)
	}
	if pos, err := f.SeekContext(ctx, -5, io.SeekEnd); err != nil || pos != 6 {
		t.Errorf("Seek from the end = %d, %v", pos, err)
	}
	if err := f.Truncate(ctx, 5); err != nil {
		t.Error(err)
	}
	if err := f.Lock(ctx, LockExclusive); err != nil {
		t.Error(err)
	}
	// A second connection cannot take the lock while it is held.
	c2 := pair(t, ServerConfig{Root: root}, nil)
	f2, err := c2.Open(ctx, "/Downloads/a/f.txt", ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	if err := f2.Lock(ctx, LockShared); !errors.Is(err, ErrWouldBlock) {
		t.Errorf("second lock: %v, want ErrWouldBlock", err)
	}
	if err := f.Lock(ctx, LockUnlock); err != nil {
		t.Error(err)
	}
	if err := f2.Lock(ctx, LockShared); err != nil {
		t.Errorf("lock after unlock: %v", err)
	}
	f2.CloseContext(ctx)
	if err := f.CloseContext(ctx); err != nil {
		t.Error(err)
	}
	if err := f.CloseContext(ctx); err == nil {
		t.Error("closing a closed handle succeeded")
	} else {
		wantStatus(t, "double close", err, StatusInvalidArg)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "Downloads/a/f.txt")); string(b) != "hello" {
		t.Errorf("file holds %q after truncate", b)
	}
	af, err := c.Open(ctx, "/Downloads/a/f.txt", Append)
	if err != nil {
		t.Fatal(err)
	}
	af.WriteContext(ctx, []byte("!"))
	af.CloseContext(ctx)
	if err := c.Truncate(ctx, "/Downloads/a/f.txt", 3); err != nil {
		t.Error(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "Downloads/a/f.txt")); string(b) != "hel" {
		t.Errorf("file holds %q after append and path truncate", b)
	}
	// Stat, set mtime.
	mt := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := c.SetModTime(ctx, "Downloads/a/f.txt", mt); err != nil {
		t.Error(err)
	}
	fi, err := c.Stat(ctx, "Downloads/a/f.txt")
	if err != nil || fi.Type != TypeRegular || fi.Size != 3 || !fi.ModTime.Equal(mt) || fi.Links != 1 {
		t.Errorf("Stat = %+v, %v", fi, err)
	}
	// Links.
	if err := c.Link(ctx, Symlink, "a/f.txt", "Downloads/sym"); err != nil {
		t.Error(err)
	}
	if fi, err := c.Stat(ctx, "Downloads/sym"); err != nil || !fi.IsSymlink() || fi.LinkTarget != "a/f.txt" {
		t.Errorf("Stat of the symlink = %+v, %v", fi, err)
	}
	// The same as fs.FileInfo values.
	if li, err := c.Lstat(ctx, "Downloads/a/f.txt"); err != nil || li.Name() != "f.txt" || li.Size() != 3 || !li.Mode().IsRegular() ||
		!li.ModTime().Equal(mt) || li.IsDir() {
		t.Errorf("Lstat of the file = %v, %v", li, err)
	}
	li, err := c.Lstat(ctx, "/Downloads/sym")
	if lt, ok := li.(interface{ LinkTarget() string }); err != nil || li.Mode()&fs.ModeSymlink == 0 || !ok || lt.LinkTarget() != "a/f.txt" || li.Name() != "sym" {
		t.Errorf("Lstat of the symlink = %v, %v", li, err)
	}
	if li, err := c.Lstat(ctx, "Downloads"); err != nil || !li.IsDir() || li.Name() != "Downloads" {
		t.Errorf("Lstat of a folder = %v, %v", li, err)
	}
	if err := c.Link(ctx, HardLink, "Downloads/a/f.txt", "Books/hard"); err != nil {
		t.Error(err)
	}
	if fi, err := c.Stat(ctx, "Books/hard"); err != nil || fi.Links != 2 {
		t.Errorf("Stat of the hard link = %+v, %v", fi, err)
	}
	var sb bytes.Buffer
	if _, err := c.ReadFile(ctx, "Downloads/sym", &sb, nil); err != nil || sb.String() != "hel" {
		t.Errorf("reading through the symlink: %q, %v", sb.String(), err)
	}
	// Rename, remove, remove-all.
	if err := c.Rename(ctx, "Books/hard", "Books/hard2"); err != nil {
		t.Error(err)
	}
	if err := c.Rename(ctx, "Books/hard2", "Books/hard2"); err != nil {
		t.Errorf("rename to itself: %v", err)
	}
	wantStatus(t, "rename of a missing file", c.Rename(ctx, "Books/nope", "Books/x"), StatusObjectNotFound)
	wantStatus(t, "remove of a full directory", c.Remove(ctx, "Downloads/a"), StatusDirNotEmpty)
	if err := c.Remove(ctx, "Downloads/a"); !errors.Is(err, ErrDirNotEmpty) {
		t.Errorf("Remove of a full directory: %v", err)
	}
	if err := c.RemoveAll(ctx, "Downloads/a"); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Downloads/a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RemoveAll left %v", err)
	}
	wantStatus(t, "remove-all of a missing path", c.RemoveAll(ctx, "Downloads/a"), StatusObjectNotFound)
	// The device behaviour table (docs/protocols/afc.md §8).
	if _, err := c.ReadDir(ctx, "nope"); !isNotExist(err) {
		t.Errorf("ReadDir of a missing path: %v", err)
	}
	_, err = c.ReadDir(ctx, "Books/hard2")
	wantStatus(t, "ReadDir of a file", err, StatusReadError)
	if _, err := c.Stat(ctx, "Books/hard2/child"); !isNotExist(err) {
		t.Errorf("Stat of file/child: %v", err)
	}
	wantStatus(t, "Mkdir below a file", c.Mkdir(ctx, "Books/hard2/d"), StatusObjectExists)
	_, err = c.Open(ctx, "nope.txt", ReadOnly)
	wantStatus(t, "open of a missing file", err, StatusObjectNotFound)
	_, err = c.Open(ctx, "DCIM", ReadOnly)
	wantStatus(t, "open of a directory", err, StatusObjectIsDir)
	_, err = c.Open(ctx, "x", Mode(9))
	wantStatus(t, "open with a bad mode", err, StatusInvalidArg)
	bad := &File{c: c, handle: 77, path: "x"}
	_, err = bad.ReadContext(ctx, buf)
	wantStatus(t, "read of a handle never opened", err, StatusInvalidArg)
	_, err = bad.WriteContext(ctx, []byte("x"))
	wantStatus(t, "write of a handle never opened", err, StatusInvalidArg)
	// The connection is still in step after the refused WRITE's data.
	if di, err := c.DeviceInfo(ctx); err != nil || di.Model != "iPhone" || di.BlockSize == 0 {
		t.Errorf("DeviceInfo = %+v, %v", di, err)
	}
	if _, err := c.ConnInfo(ctx); !errors.Is(err, ErrNotSupported) {
		t.Errorf("GET_CON_INFO: %v, want not supported", err)
	}
	cl, err := c.do(ctx, Opcode(0x99), "", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "undefined opcode", cl.status(), StatusUnknownPacketType)
	cl, _ = c.do(ctx, OpGetFileHash, "", appendPath(nil, "x"), nil, nil)
	wantStatus(t, "GET_FILE_HASH", cl.status(), StatusOpNotSupported)
	wantStatus(t, "remove of the root", c.Remove(ctx, "/"), StatusPermDenied)
	wantStatus(t, "remove-all of the root", c.RemoveAll(ctx, "/.."), StatusPermDenied)
}

// TestPathsWithoutNUL: idevice and go-ios send some paths without their
// NUL; the device takes the end of the header part as the end.
func TestPathsWithoutNUL(t *testing.T) {
	root := newTree(t)
	os.WriteFile(filepath.Join(root, "DCIM", "x"), []byte("1"), 0o644)
	c := pair(t, ServerConfig{Root: root}, nil)
	ctx := ctxT(t)
	cl, err := c.do(ctx, OpReadDir, "DCIM", []byte("DCIM"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.payload()
	if err != nil || !sameNames(b, []byte(".\x00..\x00x\x00")) {
		t.Errorf("READ_DIR without NUL: %q, %v", b, err)
	}
	cl, _ = c.do(ctx, OpRemovePath, "DCIM/x", []byte("DCIM/x"), nil, nil)
	if err := cl.status(); err != nil {
		t.Errorf("REMOVE_PATH without NUL: %v", err)
	}
}

// TestBulk: large and odd-sized files through the pipelined transfers, with
// chunk sizes that do and do not divide them, byte-identical both ways.
func TestBulk(t *testing.T) {
	root := newTree(t)
	for _, tc := range []struct {
		name          string
		size, chunk   int
		window, maxRd int
	}{
		{"empty", 0, 1024, 4, 0},
		{"one byte", 1, 1024, 4, 0},
		{"exact chunks", 64 << 10, 16 << 10, 3, 0},
		{"ragged", 100_003, 7 << 10, 5, 0},
		{"window 1", 50_000, 4 << 10, 1, 0},
		// The device answers READs shorter than asked: the client must
		// not take a short reply for the end.
		{"device caps reads", 300_000, 64 << 10, 4, 10_000},
		{"4 MiB chunks", 9 << 20, 4 << 20, 8, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pair(t, ServerConfig{Root: root, MaxRead: tc.maxRd}, &ClientConfig{ChunkSize: tc.chunk, Window: tc.window})
			ctx := ctxT(t)
			data := make([]byte, tc.size)
			io.ReadFull(testkit.Rand(uint64(tc.size)), data)
			var acked int64
			n, err := c.WriteFile(ctx, "PublicStaging/"+tc.name, bytes.NewReader(data), func(k int64) { acked += k })
			if err != nil || n != int64(tc.size) || acked != n {
				t.Fatalf("WriteFile = %d (acked %d), %v", n, acked, err)
			}
			if b, _ := os.ReadFile(filepath.Join(root, "PublicStaging", tc.name)); !bytes.Equal(b, data) {
				t.Fatalf("device holds %d bytes, differing", len(b))
			}
			var out bytes.Buffer
			n, err = c.ReadFile(ctx, "PublicStaging/"+tc.name, &out, nil)
			if err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("ReadFile = %d, %v; equal %v", n, err, bytes.Equal(out.Bytes(), data))
			}
		})
	}
}

// TestConcurrentCallers: many goroutines on one client, each with its own
// files; every reply lands with its request.
func TestConcurrentCallers(t *testing.T) {
	root := newTree(t)
	c := pair(t, ServerConfig{Root: root}, &ClientConfig{ChunkSize: 8 << 10, Window: 4})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			name := "Downloads/" + twoDigits(i)
			data := bytes.Repeat([]byte{byte(i)}, 20_000+i*1000)
			if _, err := c.WriteFile(ctx, name, bytes.NewReader(data), nil); err != nil {
				t.Error(err)
				return
			}
			fi, err := c.Stat(ctx, name)
			if err != nil || fi.Size != int64(len(data)) {
				t.Errorf("%s: Stat = %+v, %v", name, fi, err)
			}
			var out bytes.Buffer
			if _, err := c.ReadFile(ctx, name, &out, nil); err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Errorf("%s: read back %d bytes, %v", name, out.Len(), err)
			}
		})
	}
	wg.Wait()
}

// TestClientRejectsMisnumberedReply: a reply that does not echo its
// request's number ends the connection with a clear error.
func TestClientRejectsMisnumberedReply(t *testing.T) {
	host, dev := testkit.Pipe()
	c := NewClient(host, nil)
	defer c.Close()
	go func() {
		defer dev.Close()
		io.ReadFull(dev, make([]byte, HeaderSize+2))
		dev.Write(Packet{Num: 5, Op: OpStatus, Args: le64(0)}.Append(nil))
	}()
	err := c.Mkdir(ctxT(t), "/")
	if err == nil || !strings.Contains(err.Error(), "reply numbered 5 to request 0") {
		t.Fatalf("Mkdir = %v", err)
	}
	if err := c.Mkdir(ctxT(t), "/"); err == nil {
		t.Error("the client kept going after a misnumbered reply")
	}
}

// TestClientTimeout: a device that never answers fails the call after the
// client's Timeout, and the caller's context ends a wait sooner.
func TestClientTimeout(t *testing.T) {
	host, dev := testkit.Pipe()
	defer dev.Close()
	c := NewClient(host, &ClientConfig{Timeout: 200 * time.Millisecond})
	defer c.Close()
	go io.Copy(io.Discard, dev)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Stat(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stat with a short context: %v", err)
	}
	if _, err := c.Stat(context.Background(), "x"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Stat without an answer: %v", err)
	}
}

// TestServerClosesOnGarbage: bad magic, bad lengths and oversize parts end
// the connection instead of being parsed further (docs/protocols/afc.md §8).
func TestServerClosesOnGarbage(t *testing.T) {
	root := newTree(t)
	srv, _ := NewServer(ServerConfig{Root: root, MaxWrite: 1 << 20})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"bad magic", append([]byte("XXXXXXXX"), make([]byte, 32)...)},
		{"this below 40", func() []byte { b := AppendHeader(nil, 0, OpReadDir, 0, 0); b[16] = 39; return b }()},
		{"entire below this", func() []byte { b := AppendHeader(nil, 0, OpReadDir, 4, 0); b[8] = 40; return append(b, "abcd"...) }()},
		{"huge header part", AppendHeader(nil, 0, OpReadDir, 1<<30, 0)},
		{"huge write", append(AppendHeader(nil, 0, OpWrite, 8, 2<<20), le64(1)...)},
		{"short args", append(AppendHeader(nil, 0, OpRead, 4, 0), "abcd"...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, dev := testkit.Pipe()
			done := make(chan error, 1)
			go func() { done <- srv.Serve(context.Background(), dev); dev.Close() }()
			host.Write(tc.b)
			host.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := io.ReadFull(host, make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				t.Errorf("after garbage: read %d, %v; want the connection closed", n, err)
			}
			if err := <-done; err == nil {
				t.Error("Serve returned no error")
			}
			host.Close()
		})
	}
}

// hashTree hashes every path, type, size and content under dir.
func hashTree(t testing.TB, dir string) [32]byte {
	t.Helper()
	h := sha256.New()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		io.WriteString(h, rel+"\x00"+fi.Mode().String()+"\x00")
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			io.WriteString(h, l)
		}
		return nil
	})
	var out [32]byte
	h.Sum(out[:0])
	return out
}
