package crash

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"
)

// Report is a report Watch found.
type Report struct {
	Entry
	Header Header
	Data   []byte
}

// WatchOptions configures Watch.
type WatchOptions struct {
	// Saved carries the names of reports the device announces as it saves
	// them (SavedReport on its os_trace log, crash.md §4): the fast path.
	// Nil relies on listing alone.
	Saved <-chan string
	// Interval is how often the folder is listed for reports no
	// announcement named; 0 means 10 s.
	Interval time.Duration
	// Retry bounds the wait for an announced report to be readable (its
	// file present, its first line whole); 0 means 5 s.
	Retry time.Duration
	// Ready, if set, is called once the reports already there are known:
	// announcements that start after it are not missed. A caller starts
	// the stream that feeds Saved from here.
	Ready func()
}

// Watch reports every report that appears in the folder from now on,
// once each, until ctx ends or fn returns an error. Reports already there
// when it starts are not reported. Announced reports are read at once
// (retrying while the file is missing or its header does not parse yet);
// the folder is also listed every Interval, which finds reports saved
// while no announcement came through.
func (c *Client) Watch(ctx context.Context, o WatchOptions, fn func(Report) error) error {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = 5 * time.Second
	}
	seen := map[string]bool{}
	list := func() ([]Entry, error) {
		es, err := c.List(ctx, "/", 0)
		if err != nil {
			return nil, err
		}
		out := es[:0]
		for _, e := range es {
			if e.Type == "file" {
				out = append(out, e)
			}
		}
		return out, nil
	}
	start, err := list()
	if err != nil {
		return err
	}
	for _, e := range start {
		seen[e.Path] = true
	}
	if o.Ready != nil {
		o.Ready()
	}
	deliver := func(e Entry, data []byte) error {
		seen[e.Path] = true
		h, _, _ := ParseHeader(data)
		return fn(Report{Entry: e, Header: h, Data: data})
	}
	// A report found by listing may still be being written (whether the
	// device renames reports into place is not known): one whose header does
	// not parse yet is read again at the next listing and delivered as it is
	// once its size stops changing, or after three listings, so a file that is
	// no .ips report still arrives, one listing late.
	type unsettled struct{ size, listings int }
	pending := map[string]unsettled{}
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	saved := o.Saved
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case name, ok := <-saved:
			if !ok {
				saved = nil // announcements stopped: listing goes on
				continue
			}
			p := path.Base(name)
			if seen[p] {
				continue
			}
			e, data, err := c.readAnnounced(ctx, p, o.Retry)
			if err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				// Not readable in time: the next listing finds it.
				continue
			}
			if err := deliver(e, data); err != nil {
				return err
			}
		case <-t.C:
			es, err := list()
			if err != nil {
				return err
			}
			for _, e := range es {
				if seen[e.Path] {
					continue
				}
				data, err := c.Read(ctx, e.Path)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return err
				}
				if _, _, herr := ParseHeader(data); herr != nil {
					u, ok := pending[e.Path]
					if u.listings < 3 && (!ok || u.size != len(data) || len(data) == 0) {
						pending[e.Path] = unsettled{len(data), u.listings + 1}
						continue
					}
				}
				delete(pending, e.Path)
				if err := deliver(e, data); err != nil {
					return err
				}
			}
		}
	}
}

// readAnnounced reads a report the device said it saved, retrying while
// it is missing or its header is incomplete (the device may still be
// writing it), for up to wait.
func (c *Client) readAnnounced(ctx context.Context, name string, wait time.Duration) (Entry, []byte, error) {
	deadline := time.Now().Add(wait)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		fi, err := c.afc.Lstat(ctx, name)
		if err == nil {
			var data []byte
			if data, err = c.Read(ctx, name); err == nil {
				if _, _, herr := ParseHeader(data); herr == nil {
					return entryOf(name, fi), data, nil
				} else {
					err = herr
				}
			}
		}
		if time.Now().After(deadline) {
			return Entry{}, nil, fmt.Errorf("crash: %s: report %s not readable after %v: %w", c.udid, name, wait, err)
		}
		select {
		case <-ctx.Done():
			return Entry{}, nil, context.Cause(ctx)
		case <-time.After(delay):
		}
	}
}
