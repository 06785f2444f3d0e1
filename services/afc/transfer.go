package afc

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// Progress is a recursive transfer's state, cumulative.
type Progress struct {
	Files, TotalFiles int
	Bytes, TotalBytes int64
	// Path is the device path of the file that last moved bytes.
	Path string
}

// TransferConfig configures Push and Pull.
type TransferConfig struct {
	// Progress, if set, is told of every chunk moved and every file
	// finished; calls are serialised.
	Progress func(Progress)
	// Parallel is how many files move at once over each connection; 0
	// means DefaultParallel. Small files are round-trip bound, so several
	// in flight keep the connection busy.
	Parallel int
	// Extra are clients on more connections to the same service root.
	// Files are spread over them and the client Push or Pull is called
	// on, and a file larger than SegmentSize is cut into segments that
	// move over different connections at once: a device serves each
	// connection in turn, request after request, so more connections let
	// it work on several at once (docs/perf.md measures it).
	Extra []*Client
	// SegmentSize is the size of the pieces of a large file when there
	// are Extra clients; 0 means DefaultSegmentSize.
	SegmentSize int64
}

// Defaults of TransferConfig.
const (
	DefaultParallel    = 8
	DefaultSegmentSize = 64 << 20
)

func (cfg TransferConfig) segment(clients int, size int64) int64 {
	if clients < 2 {
		return 0
	}
	seg := cfg.SegmentSize
	if seg <= 0 {
		seg = DefaultSegmentSize
	}
	if size <= seg {
		return 0
	}
	return seg
}

// Stats sums a finished transfer.
type Stats struct {
	Files, Dirs, Links int
	Bytes              int64
}

// job is one file, or one segment of a file, to move.
type job struct {
	local, remote string
	size          int64 // of the file
	// A segment: length bytes from off (length 0 with seg false: the
	// whole file).
	seg         bool
	off, length int64
}

// segments cuts a file of size into jobs of at most seg bytes (one job
// when seg is 0).
func segments(local, remote string, size, seg int64) []job {
	if seg <= 0 {
		return []job{{local: local, remote: remote, size: size}}
	}
	var out []job
	for off := int64(0); off < size; off += seg {
		out = append(out, job{local: local, remote: remote, size: size, seg: true, off: off, length: min(seg, size-off)})
	}
	return out
}

type tracker struct {
	mu sync.Mutex
	p  Progress
	cb func(Progress)
}

func (t *tracker) add(path string, n int64, file bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Bytes += n
	t.p.Path = path
	if file {
		t.p.Files++
	}
	if t.cb != nil {
		t.cb(t.p)
	}
}

// runJobs moves files with workers workers, numbered; the first error
// stops the rest.
func runJobs(ctx context.Context, jobs []job, workers int, move func(ctx context.Context, worker int, j job) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan job)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := range min(workers, max(len(jobs), 1)) {
		wg.Go(func() {
			for j := range ch {
				if err := move(ctx, w, j); err != nil {
					once.Do(func() { first = err; cancel(err) })
				}
			}
		})
	}
feed:
	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first != nil {
		return first
	}
	return context.Cause(ctx)
}

// Push copies a local file or folder to the device. A folder is copied
// with everything below it; symbolic links are made again as links.
// When remote is an existing directory the source goes inside it under
// its own name (as cp does); otherwise remote is the new name.
func (c *Client) Push(ctx context.Context, local, remote string, cfg TransferConfig) (Stats, error) {
	var st Stats
	li, err := os.Lstat(local)
	if err != nil {
		return st, fmt.Errorf("afc: push: %w", err)
	}
	if fi, err := c.Stat(ctx, remote); err == nil && fi.IsDir() {
		remote = path.Join(remote, filepath.Base(filepath.Clean(local)))
	} else if err != nil && !isNotExist(err) {
		return st, err
	}
	var jobs []job
	var dirs []string
	type link struct{ target, remote string }
	var links []link
	tr := &tracker{cb: cfg.Progress}
	if !li.IsDir() {
		if !li.Mode().IsRegular() {
			return st, fmt.Errorf("afc: push %s: not a regular file or folder", local)
		}
		jobs = append(jobs, job{local: local, remote: remote, size: li.Size()})
	} else {
		err = filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(local, p)
			dst := remote
			if rel != "." {
				dst = path.Join(remote, filepath.ToSlash(rel))
			}
			switch {
			case d.IsDir():
				dirs = append(dirs, dst)
			case d.Type()&fs.ModeSymlink != 0:
				t, err := os.Readlink(p)
				if err != nil {
					return err
				}
				links = append(links, link{t, dst})
			case d.Type().IsRegular():
				fi, err := d.Info()
				if err != nil {
					return err
				}
				jobs = append(jobs, job{local: p, remote: dst, size: fi.Size()})
			}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("afc: push: %w", err)
		}
	}
	for _, j := range jobs {
		tr.p.TotalBytes += j.size
	}
	tr.p.TotalFiles = len(jobs)
	// Directories first, all in flight at once (MAKE_DIR makes parents,
	// so their order does not matter).
	if err := c.batch(ctx, len(dirs), func(i int) (*call, error) {
		return c.start(ctx, OpMakeDir, dirs[i], appendPath(nil, dirs[i]), nil, nil)
	}); err != nil {
		return st, err
	}
	st.Dirs = len(dirs)
	clients := append([]*Client{c}, cfg.Extra...)
	var work []job
	for _, j := range jobs {
		seg := cfg.segment(len(clients), j.size)
		if seg > 0 {
			// Made (and emptied) once; the segments then write into it
			// without truncating.
			if _, err := c.WriteFile(ctx, j.remote, strings.NewReader(""), nil); err != nil {
				return st, err
			}
		}
		work = append(work, segments(j.local, j.remote, j.size, seg)...)
	}
	parts := map[string]int{} // segments left per file, for the file count
	for _, j := range work {
		parts[j.remote]++
	}
	var pmu sync.Mutex
	finished := func(j job) {
		pmu.Lock()
		parts[j.remote]--
		last := parts[j.remote] == 0
		pmu.Unlock()
		if last {
			tr.add(j.remote, 0, true)
		}
	}
	err = runSplit(ctx, work, parallelOf(cfg), len(clients), func(ctx context.Context, w int, j job) error {
		cl := clients[w%len(clients)]
		f, err := os.Open(j.local)
		if err != nil {
			return fmt.Errorf("afc: push: %w", err)
		}
		defer f.Close()
		prog := func(n int64) { tr.add(j.remote, n, false) }
		if !j.seg {
			_, err = cl.WriteFile(ctx, j.remote, f, prog)
		} else {
			err = cl.writeSegment(ctx, j, f, prog)
		}
		if err != nil {
			return err
		}
		finished(j)
		return nil
	})
	if err != nil {
		return st, err
	}
	for _, l := range links {
		c.Remove(ctx, l.remote) // replace, as cp -r over an old copy would
		if err := c.Link(ctx, Symlink, l.target, l.remote); err != nil {
			return st, err
		}
	}
	st.Files, st.Links, st.Bytes = len(jobs), len(links), tr.p.Bytes
	return st, nil
}

// batch starts n requests at once, then collects their STATUS replies.
func (c *Client) batch(ctx context.Context, n int, start func(i int) (*call, error)) error {
	const window = 64
	var inflight []*call
	collect := func() error {
		cl := inflight[0]
		inflight = inflight[1:]
		if err := c.wait(ctx, cl); err != nil {
			return err
		}
		return cl.status()
	}
	for i := range n {
		if len(inflight) == window {
			if err := collect(); err != nil {
				return err
			}
		}
		cl, err := start(i)
		if err != nil {
			return err
		}
		inflight = append(inflight, cl)
	}
	for len(inflight) > 0 {
		if err := collect(); err != nil {
			return err
		}
	}
	return nil
}

// entry is a walked device path.
type entry struct {
	remote string
	rel    string // slash path below the source; "" for the source itself
	info   FileInfo
}

// Walk visits remote and, if it is a directory, everything below it,
// parents before children. The stats of one directory's entries are all
// in flight at once. Names a device lists that are not plain names ("",
// ".", "..", or holding "/") are an error: a host must not be led out of
// the folder it copies into.
func (c *Client) Walk(ctx context.Context, remote string, fn func(p string, fi FileInfo) error) error {
	fi, err := c.Stat(ctx, remote)
	if err != nil {
		return err
	}
	return c.walk(ctx, remote, "", fi, func(e entry) error { return fn(e.remote, e.info) })
}

func (c *Client) walk(ctx context.Context, remote, rel string, fi FileInfo, fn func(entry) error) error {
	if err := fn(entry{remote, rel, fi}); err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	names, err := c.ReadDir(ctx, remote)
	if err != nil {
		return err
	}
	calls := make([]*call, len(names))
	for i, n := range names {
		if n == "." || n == ".." || strings.ContainsAny(n, "/\x00") || n == "" {
			return fmt.Errorf("afc: %s lists an entry named %q: refusing to copy it", remote, n)
		}
		p := path.Join(remote, n)
		if calls[i], err = c.start(ctx, OpGetFileInfo, p, appendPath(nil, p), nil, nil); err != nil {
			return err
		}
	}
	infos := make([]FileInfo, len(names))
	for i, cl := range calls {
		if err := c.wait(ctx, cl); err != nil {
			return err
		}
		b, err := cl.payload()
		if err == nil {
			infos[i], err = ParseFileInfo(b)
		}
		if err != nil {
			return err
		}
	}
	for i, n := range names {
		if err := c.walk(ctx, path.Join(remote, n), path.Join(rel, n), infos[i], fn); err != nil {
			return err
		}
	}
	return nil
}

// Pull copies a device file or folder to local. A folder is copied with
// everything below it; symbolic links are made again as links with the
// same target. When local is an existing directory the source goes inside
// it under its own name; otherwise local is the new name. Files are
// written through an os.Root on the destination, so no name a device
// lists can put a file outside it.
func (c *Client) Pull(ctx context.Context, remote, local string, cfg TransferConfig) (Stats, error) {
	var st Stats
	if li, err := os.Stat(local); err == nil && li.IsDir() {
		base := path.Base(path.Clean("/" + remote))
		if base == "/" {
			base = "root"
		}
		local = filepath.Join(local, base)
	}
	var entries []entry
	if err := c.walkAll(ctx, remote, &entries); err != nil {
		return st, err
	}
	parent := filepath.Dir(local)
	name := filepath.Base(local)
	root, err := os.OpenRoot(parent)
	if err != nil {
		return st, fmt.Errorf("afc: pull: %w", err)
	}
	defer root.Close()
	dst := func(rel string) string {
		if rel == "" {
			return name
		}
		return filepath.Join(name, filepath.FromSlash(rel))
	}
	tr := &tracker{cb: cfg.Progress}
	var jobs []job
	for _, e := range entries {
		switch {
		case e.info.IsDir():
			if err := root.MkdirAll(dst(e.rel), 0o755); err != nil {
				return st, fmt.Errorf("afc: pull: %w", err)
			}
			st.Dirs++
		case e.info.IsSymlink():
			d := dst(e.rel)
			root.Remove(d)
			if err := root.Symlink(e.info.LinkTarget, d); err != nil {
				return st, fmt.Errorf("afc: pull: %w", err)
			}
			st.Links++
		case e.info.Type == TypeRegular || e.info.Type == "":
			jobs = append(jobs, job{local: dst(e.rel), remote: e.remote, size: e.info.Size})
			tr.p.TotalBytes += e.info.Size
		}
	}
	tr.p.TotalFiles = len(jobs)
	clients := append([]*Client{c}, cfg.Extra...)
	var work []job
	for _, j := range jobs {
		seg := cfg.segment(len(clients), j.size)
		if seg > 0 {
			// Made at its full size once; the segments then write into it.
			f, err := root.OpenFile(j.local, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err == nil {
				err = f.Truncate(j.size)
				f.Close()
			}
			if err != nil {
				return st, fmt.Errorf("afc: pull: %w", err)
			}
		}
		work = append(work, segments(j.local, j.remote, j.size, seg)...)
	}
	parts := map[string]int{}
	for _, j := range work {
		parts[j.remote]++
	}
	var pmu sync.Mutex
	err = runSplit(ctx, work, parallelOf(cfg), len(clients), func(ctx context.Context, w int, j job) error {
		cl := clients[w%len(clients)]
		prog := func(n int64) { tr.add(j.remote, n, false) }
		var err error
		if !j.seg {
			var f *os.File
			if f, err = root.OpenFile(j.local, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
				return fmt.Errorf("afc: pull: %w", err)
			}
			_, err = cl.ReadFile(ctx, j.remote, f, prog)
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("afc: pull: %w", cerr)
			}
		} else {
			var f *os.File
			if f, err = root.OpenFile(j.local, os.O_WRONLY, 0); err != nil {
				return fmt.Errorf("afc: pull: %w", err)
			}
			err = cl.readSegment(ctx, j, f, prog)
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("afc: pull: %w", cerr)
			}
		}
		if err != nil {
			return err
		}
		pmu.Lock()
		parts[j.remote]--
		last := parts[j.remote] == 0
		pmu.Unlock()
		if last {
			tr.add(j.remote, 0, true)
		}
		return nil
	})
	st.Files, st.Bytes = len(jobs), tr.p.Bytes
	return st, err
}

func (c *Client) walkAll(ctx context.Context, remote string, out *[]entry) error {
	fi, err := c.Stat(ctx, remote)
	if err != nil {
		return err
	}
	return c.walk(ctx, remote, "", fi, func(e entry) error {
		*out = append(*out, e)
		return nil
	})
}

var _ io.ReadWriteSeeker = (*File)(nil)

// runSplit moves the segments of large files first, one at a time per
// connection (each already keeps a window of chunks in flight; more at once
// only multiplies buffers and seeks), then whole files, parallel at a time
// per connection.
func runSplit(ctx context.Context, work []job, parallel, conns int, move func(ctx context.Context, worker int, j job) error) error {
	var segs, whole []job
	for _, j := range work {
		if j.seg {
			segs = append(segs, j)
		} else {
			whole = append(whole, j)
		}
	}
	if err := runJobs(ctx, segs, conns, move); err != nil {
		return err
	}
	return runJobs(ctx, whole, parallel*conns, move)
}

func parallelOf(cfg TransferConfig) int {
	if cfg.Parallel <= 0 {
		return DefaultParallel
	}
	return cfg.Parallel
}

// writeSegment writes j's range of the local file into the device file
// (made beforehand), from its offset.
func (c *Client) writeSegment(ctx context.Context, j job, local *os.File, progress func(int64)) error {
	f, err := c.Open(ctx, j.remote, ReadWrite)
	if err != nil {
		return err
	}
	if _, err = f.SeekContext(ctx, j.off, io.SeekStart); err == nil {
		var n int64
		n, err = f.writeFrom(ctx, io.NewSectionReader(local, j.off, j.length), progress)
		if err == nil && n != j.length {
			err = fmt.Errorf("afc: pushing %s: %d of %d bytes of the segment at %d (did the local file shrink?)", j.remote, n, j.length, j.off)
		}
	}
	if cerr := f.CloseContext(ctx); err == nil {
		err = cerr
	}
	return err
}

// readSegment reads j's range of the device file into the local file (made
// at its full size beforehand), at its offset.
func (c *Client) readSegment(ctx context.Context, j job, local *os.File, progress func(int64)) error {
	f, err := c.Open(ctx, j.remote, ReadOnly)
	if err != nil {
		return err
	}
	if _, err = f.SeekContext(ctx, j.off, io.SeekStart); err == nil {
		var n int64
		n, err = f.readTo(ctx, io.NewOffsetWriter(local, j.off), j.length, progress)
		if err == nil && n != j.length {
			err = fmt.Errorf("afc: pulling %s: %d of %d bytes of the segment at %d (did the device file shrink?)", j.remote, n, j.length, j.off)
		}
	}
	if cerr := f.CloseContext(ctx); err == nil {
		err = cerr
	}
	return err
}
