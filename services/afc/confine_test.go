package afc

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// confined is a served tree next to a folder it must never reach.
type confined struct {
	root, outside string
	before        [32]byte
}

func newConfined(t *testing.T) *confined {
	base := t.TempDir()
	c := &confined{root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{"root/DCIM", "root/Downloads", "root/PublicStaging", "outside/dir"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(c.outside, "secret"), []byte("SECRET"), 0o644)
	os.WriteFile(filepath.Join(c.outside, "dir", "f"), []byte("SECRET"), 0o644)
	os.WriteFile(filepath.Join(c.root, "DCIM", "f"), []byte("inside"), 0o644)
	c.before = hashTree(t, c.outside)
	t.Cleanup(func() {
		if hashTree(t, c.outside) != c.before {
			t.Error("the folder outside the served tree changed")
		}
	})
	return c
}

// TestConfinement: every way out of the tree a host can write — "..",
// absolute paths, links made through MAKE_LINK to outside (absolute and
// relative, symbolic and hard) — fails with the device's error, reads
// nothing from outside and changes nothing there.
func TestConfinement(t *testing.T) {
	cf := newConfined(t)
	c := pair(t, ServerConfig{Root: cf.root}, nil)
	ctx := ctxT(t)
	denied := func(what string, err error) {
		t.Helper()
		wantStatus(t, what, err, StatusPermDenied)
	}
	// "..": refused before the file system sees it.
	for _, p := range []string{"..", "../", "/..", "/../outside", "DCIM/../../outside/secret", "./../outside", "DCIM/../.."} {
		_, err := c.ReadDir(ctx, p)
		denied("ReadDir "+p, err)
		_, err = c.Stat(ctx, p)
		denied("Stat "+p, err)
	}
	_, err := c.Open(ctx, "../outside/secret", ReadOnly)
	denied("open ../outside/secret", err)
	_, err = c.Open(ctx, "../outside/new", WriteOnly)
	denied("create ../outside/new", err)
	denied("mkdir ../outside/x", c.Mkdir(ctx, "../outside/x"))
	denied("remove ../outside/secret", c.Remove(ctx, "../outside/secret"))
	denied("remove-all ../outside", c.RemoveAll(ctx, "../outside"))
	denied("rename out", c.Rename(ctx, "DCIM/f", "../outside/moved"))
	denied("rename in", c.Rename(ctx, "../outside/secret", "DCIM/stolen"))
	denied("truncate ../outside/secret", c.Truncate(ctx, "../outside/secret", 0))
	denied("set time ../outside/secret", c.SetModTime(ctx, "../outside/secret", time.Unix(0, 0)))
	denied("hard link from outside", c.Link(ctx, HardLink, "../outside/secret", "DCIM/h"))
	denied("link placed outside", c.Link(ctx, Symlink, "DCIM/f", "../outside/l"))

	// Absolute paths are the device's, inside the root: "/etc/passwd" is
	// a path of the tree, not of the host.
	if _, err := c.Stat(ctx, "/etc/passwd"); !isNotExist(err) {
		t.Errorf("Stat /etc/passwd: %v", err)
	}
	if _, err := c.Stat(ctx, cf.outside+"/secret"); !isNotExist(err) {
		t.Errorf("Stat of the outside folder's host path: %v", err)
	}

	// Symbolic links made through AFC may point anywhere (a device stores
	// the target as given), but following one out of the tree is refused.
	for _, l := range []struct{ name, target string }{
		{"DCIM/abs", cf.outside},
		{"DCIM/rel", "../../outside"},
		{"DCIM/absfile", filepath.Join(cf.outside, "secret")},
		{"DCIM/root", "/"},
	} {
		if err := c.Link(ctx, Symlink, l.target, l.name); err != nil {
			t.Fatalf("making %s: %v", l.name, err)
		}
		if fi, err := c.Stat(ctx, l.name); err != nil || fi.LinkTarget != l.target {
			t.Errorf("Stat %s = %+v, %v", l.name, fi, err)
		}
	}
	for _, p := range []string{"DCIM/abs/secret", "DCIM/rel/secret", "DCIM/absfile", "DCIM/rel/dir/f", "DCIM/root/etc/passwd"} {
		var out bytes.Buffer
		_, err := c.ReadFile(ctx, p, &out, nil)
		denied("read "+p, err)
		if strings.Contains(out.String(), "SECRET") {
			t.Errorf("read %s returned the outside file", p)
		}
		_, err = c.Open(ctx, p, ReadWrite)
		denied("open for writing "+p, err)
		_, err = c.ReadDir(ctx, filepath.Dir(p))
		if filepath.Dir(p) != "DCIM" {
			denied("list "+filepath.Dir(p), err)
		}
		denied("truncate "+p, c.Truncate(ctx, p, 0))
		denied("set time "+p, c.SetModTime(ctx, p, time.Unix(0, 0)))
		if p == "DCIM/absfile" {
			continue // the link itself: removing or moving it is fine
		}
		denied("remove "+p, c.Remove(ctx, p))
		denied("rename "+p, c.Rename(ctx, p, "DCIM/x"))
		denied("hard link to "+p, c.Link(ctx, HardLink, p, "DCIM/h2"))
	}
	_, err = c.Open(ctx, "DCIM/abs/new", WriteOnly)
	denied("create through a link", err)
	denied("mkdir through a link", c.Mkdir(ctx, "DCIM/rel/newdir"))
	_, err = c.ReadDir(ctx, "DCIM/abs")
	denied("list through a link", err)
	// Removing the links themselves is fine and leaves their targets.
	for _, l := range []string{"DCIM/abs", "DCIM/rel", "DCIM/absfile"} {
		if err := c.Remove(ctx, l); err != nil {
			t.Errorf("remove %s: %v", l, err)
		}
	}
	if err := c.RemoveAll(ctx, "DCIM/root"); err != nil {
		t.Errorf("remove-all of a link to /: %v", err)
	}
	// A link that stays inside works.
	if err := c.Link(ctx, Symlink, "../DCIM", "Downloads/pics"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := c.ReadFile(ctx, "Downloads/pics/f", &out, nil); err != nil || out.String() != "inside" {
		t.Errorf("reading through an inside link: %q, %v", out.String(), err)
	}
}

// TestSymlinkRace: a link flipped between an inside folder and an outside
// one, as fast as the host can, while AFC reads and writes through it.
// os.Root resolves each request against the root's descriptor, so no
// request ever lands outside whatever the timing.
func TestSymlinkRace(t *testing.T) {
	cf := newConfined(t)
	os.MkdirAll(filepath.Join(cf.root, "DCIM", "in"), 0o755)
	os.WriteFile(filepath.Join(cf.root, "DCIM", "in", "secret"), []byte("inside"), 0o644)
	os.WriteFile(filepath.Join(cf.root, "DCIM", "in", "f"), []byte("inside"), 0o644)
	c := pair(t, ServerConfig{Root: cf.root}, nil)
	ctx := ctxT(t)
	link := filepath.Join(cf.root, "DCIM", "l")
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		tmp := link + ".tmp"
		for i := 0; !stop.Load(); i++ {
			target := "in"
			if i%2 == 1 {
				target = cf.outside
			}
			os.Remove(tmp)
			os.Symlink(target, tmp)
			os.Rename(tmp, link) // atomic swap
		}
	})
	var reads, inside int
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		var out bytes.Buffer
		_, err := c.ReadFile(ctx, "DCIM/l/secret", &out, nil)
		reads++
		if strings.Contains(out.String(), "SECRET") {
			t.Fatal("a read through the flipping link returned the outside file")
		}
		if err == nil {
			inside++
		} else if !errors.Is(err, fs.ErrPermission) && !isNotExist(err) {
			t.Fatalf("read: %v", err)
		}
		// Writes through the link must never create or change anything
		// outside (the cleanup compares the outside folder).
		c.WriteFile(ctx, "DCIM/l/f", strings.NewReader("inside"), nil)
		c.Truncate(ctx, "DCIM/l/secret", 6)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d reads, %d through the inside target", reads, inside)
}

// TestOnlyDocuments: a server confined to Documents (house_arrest's
// VendDocuments) shows only it and keeps every other top-level path, and
// links out of Documents, unreachable.
func TestOnlyDocuments(t *testing.T) {
	cont := t.TempDir()
	for _, d := range []string{"Documents", "Library/Caches", "tmp"} {
		os.MkdirAll(filepath.Join(cont, d), 0o755)
	}
	os.WriteFile(filepath.Join(cont, "Library", "secret"), []byte("SECRET"), 0o644)
	c := pair(t, ServerConfig{Root: cont, Only: "Documents"}, nil)
	ctx := ctxT(t)
	names, err := c.ReadDir(ctx, "/")
	if err != nil || !slices.Equal(names, []string{"Documents"}) {
		t.Errorf("ReadDir / = %q, %v", names, err)
	}
	if fi, err := c.Stat(ctx, "/"); err != nil || !fi.IsDir() {
		t.Errorf("Stat / = %+v, %v", fi, err)
	}
	if _, err := c.WriteFile(ctx, "/Documents/a.txt", strings.NewReader("doc"), nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(cont, "Documents", "a.txt")); string(b) != "doc" {
		t.Errorf("Documents/a.txt = %q", b)
	}
	for _, p := range []string{"/Library", "/Library/secret", "/tmp", "Documents/../Library/secret"} {
		_, err := c.Stat(ctx, p)
		wantStatus(t, "Stat "+p, err, StatusPermDenied)
	}
	wantStatus(t, "mkdir at the top", c.Mkdir(ctx, "/x"), StatusPermDenied)
	wantStatus(t, "remove Documents' parent", c.RemoveAll(ctx, "/"), StatusPermDenied)
	if err := c.Link(ctx, Symlink, "../Library", "Documents/lib"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err = c.ReadFile(ctx, "Documents/lib/secret", &out, nil)
	wantStatus(t, "read through a link out of Documents", err, StatusPermDenied)
	if out.Len() > 0 {
		t.Error("read data from outside Documents")
	}
}
