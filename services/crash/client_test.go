package crash

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/afc"
)

// folder makes a crash folder like the simulator's, with known times.
func folder(t *testing.T) (string, time.Time) {
	t.Helper()
	dir := t.TempDir()
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	files := map[string]string{
		"SimApp-2026-01-01-120000.ips":        sampleReport,
		"Retired/Old-2025-12-31-235959.ips":   `{"bug_type":"309","name":"Old"}` + "\n{}",
		"DiagnosticLogs/sysdiagnose/x.tar.gz": "not a report",
		"panic-full-2026-01-01.panic":         `{"bug_type":"210","name":"kernel"}` + "\n{}",
	}
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(full, at, at)
		at = at.Add(time.Minute)
	}
	os.MkdirAll(filepath.Join(dir, Appstored), 0o755)
	return dir, at
}

// serve runs the AFC device role over dir and returns a client.
func serve(t *testing.T, dir string) *Client {
	t.Helper()
	srv, err := afc.NewServer(afc.ServerConfig{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	a, b := testkit.Pipe()
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wg.Go(func() { defer b.Close(); srv.Serve(ctx, b) })
	c := NewClient(afc.NewClient(a, nil), "00008120-0000000000000001")
	t.Cleanup(func() { c.Close(); cancel(); wg.Wait() })
	return c
}

func TestList(t *testing.T) {
	dir, _ := folder(t)
	c := serve(t, dir)
	ctx := context.Background()
	all, err := c.List(ctx, "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range all {
		paths = append(paths, e.Type+":"+e.Path)
	}
	slices.Sort(paths)
	want := []string{"dir:DiagnosticLogs", "dir:DiagnosticLogs/sysdiagnose", "dir:Retired", "dir:" + Appstored,
		"file:DiagnosticLogs/sysdiagnose/x.tar.gz", "file:Retired/Old-2025-12-31-235959.ips",
		"file:SimApp-2026-01-01-120000.ips", "file:panic-full-2026-01-01.panic"}
	slices.Sort(want)
	if !slices.Equal(paths, want) {
		t.Errorf("List = %v\nwant %v", paths, want)
	}
	top, _ := c.List(ctx, "", 1)
	if len(top) != 5 {
		t.Errorf("depth 1 lists %d entries, want 5", len(top))
	}
	for _, e := range all {
		if e.Path == "SimApp-2026-01-01-120000.ips" && (e.Size != int64(len(sampleReport)) || !e.ModTime.Equal(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)) && e.ModTime.IsZero()) {
			t.Errorf("entry %+v", e)
		}
	}
	if _, err := c.List(ctx, "/nope", 0); err == nil {
		t.Error("listing a missing path succeeded")
	}
}

// TestPull: the tree arrives under out with the device's structure and
// times; --match and --erase.
func TestPull(t *testing.T) {
	dir, _ := folder(t)
	c := serve(t, dir)
	ctx := context.Background()
	out := t.TempDir()
	var last [2]int64
	st, err := c.Pull(ctx, "/", out, PullOptions{Progress: func(d, tot int64) { last = [2]int64{d, tot} }})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 4 || last[0] != st.Bytes || last[1] != st.Bytes {
		t.Errorf("stats %+v, last progress %v", st, last)
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, walkErr error) error {
		if walkErr != nil {
			t.Fatal(walkErr)
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s pulled %q, %v", rel, got, err)
		}
		wi, _ := os.Stat(p)
		gi, _ := os.Stat(filepath.Join(out, rel))
		if gi == nil || !gi.ModTime().Equal(wi.ModTime()) || gi.Mode().Perm() != 0o600 {
			t.Errorf("%s: time %v mode %v, want %v 0600", rel, gi.ModTime(), gi.Mode(), wi.ModTime())
		}
		return nil
	})

	out2 := t.TempDir()
	var pulled []string
	st, err = c.Pull(ctx, "/", out2, PullOptions{Match: regexp.MustCompile(`\.ips$`), Erase: true,
		Pulled: func(e Entry, _ string) { pulled = append(pulled, e.Path) }})
	if err != nil || st.Files != 2 {
		t.Fatalf("Pull --match --erase = %+v, %v", st, err)
	}
	slices.Sort(pulled)
	if !slices.Equal(pulled, []string{"Retired/Old-2025-12-31-235959.ips", "SimApp-2026-01-01-120000.ips"}) {
		t.Errorf("pulled %v", pulled)
	}
	for _, p := range pulled {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still on the device after --erase", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "panic-full-2026-01-01.panic")); err != nil {
		t.Error("a file --match excluded was erased")
	}
}

func TestLocalPath(t *testing.T) {
	for _, bad := range []string{"../x", "a/../../x", "a//b", "/abs", `a\..\b`} {
		if _, err := LocalPath("/out", bad); err == nil {
			t.Errorf("LocalPath(%q) accepted", bad)
		}
	}
	if p, err := LocalPath("/out", "Retired/a.ips"); err != nil || p != filepath.Join("/out", "Retired", "a.ips") {
		t.Errorf("localPath = %q, %v", p, err)
	}
}

func TestClear(t *testing.T) {
	dir, _ := folder(t)
	c := serve(t, dir)
	if err := c.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left: %v", entries)
	}
}

// TestWatch: a report announced is reported at once, one that appears
// unannounced at the next listing, each once; reports there at the start
// are not.
func TestWatch(t *testing.T) {
	dir, _ := folder(t)
	c := serve(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	saved := make(chan string, 4)
	got := make(chan Report, 4)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, WatchOptions{Saved: saved, Interval: 100 * time.Millisecond}, func(r Report) error { got <- r; return nil })
	}()
	// next is the next report, or fails the test with missing after 5 s.
	next := func(missing string) Report {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal(missing)
		}
		return Report{}
	}
	time.Sleep(50 * time.Millisecond) // the first listing
	// Announced before the file is whole: the watcher retries.
	p := filepath.Join(dir, "Demo-2026-01-02-030405.ips")
	os.WriteFile(p, []byte(`{"bug_type":"309",`), 0o644)
	saved <- "/private/var/mobile/Library/Logs/CrashReporter/Demo-2026-01-02-030405.ips"
	time.Sleep(30 * time.Millisecond)
	os.WriteFile(p, []byte(`{"bug_type":"309","name":"Demo"}`+"\n{}"), 0o644)
	if r := next("the announced report was not reported"); r.Path != "Demo-2026-01-02-030405.ips" || r.Header.Name != "Demo" {
		t.Errorf("report %+v", r)
	}
	// Unannounced, in a subfolder: found by listing.
	os.WriteFile(filepath.Join(dir, "Retired", "Quiet.ips"), []byte(`{"bug_type":"309","name":"Quiet"}`+"\n{}"), 0o644)
	if r := next("the unannounced report was not reported"); r.Path != "Retired/Quiet.ips" || r.Header.Name != "Quiet" {
		t.Errorf("report %+v", r)
	}
	// Found by listing while still empty, written whole later: reported
	// with its content, not empty.
	quiet2 := filepath.Join(dir, "Quiet2.ips")
	os.WriteFile(quiet2, nil, 0o644)
	time.Sleep(150 * time.Millisecond) // one or two listings see it empty
	os.WriteFile(quiet2, []byte(`{"bug_type":"309","name":"Quiet2"}`+"\n{}"), 0o644)
	if r := next("the report written after it appeared was not reported"); r.Path != "Quiet2.ips" || r.Header.Name != "Quiet2" {
		t.Errorf("report %+v", r)
	}
	// Not an .ips report: delivered once its size has settled.
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello\n"), 0o644)
	if r := next("a file with no report header was never reported"); r.Path != "notes.txt" || string(r.Data) != "hello\n" {
		t.Errorf("report %+v", r)
	}
	saved <- "Demo-2026-01-02-030405.ips" // again: not reported twice
	select {
	case r := <-got:
		t.Errorf("reported again or one that was there: %s", r.Path)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v", err)
	}
}
