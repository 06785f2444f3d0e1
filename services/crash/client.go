package crash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/services/reach"
)

// Folder is the AFC client of a crashreportcopymobile connection, what
// Client reads the folder through: an *afc.Client (services/afc) fits.
// Errors answer errors.Is for fs.ErrNotExist and fs.ErrPermission.
type Folder interface {
	ReadDir(ctx context.Context, path string) ([]string, error)
	// Lstat describes a path without following a final link; a link's
	// value has a LinkTarget() string method.
	Lstat(ctx context.Context, path string) (fs.FileInfo, error)
	ReadFile(ctx context.Context, path string, w io.Writer, progress func(n int64)) (int64, error)
	Remove(ctx context.Context, path string) error
	RemoveAll(ctx context.Context, path string) error
	Close() error
}

// Client reads and removes a device's crash reports over one connection
// to crashreportcopymobile (AFC rooted at the crash folder, crash.md §2).
// Safe for concurrent use when its Folder is (an AFC client is).
type Client struct {
	afc  Folder
	udid string
}

// Options says how Open reaches the folder.
type Options struct {
	// NoFlush skips crashreportmover: pending reports stay where they are.
	NoFlush bool
	// Folder speaks AFC on the crashreportcopymobile connection:
	// func(c net.Conn) crash.Folder { return afc.NewClient(c, nil) }.
	Folder func(conn net.Conn) Folder
}

// Open flushes pending reports into the folder (crashreportmover, unless
// NoFlush) and opens crashreportcopymobile through o.
func Open(ctx context.Context, o reach.Opener, opts Options) (*Client, error) {
	if opts.Folder == nil {
		return nil, errors.New("crash: Open without an AFC client for the folder")
	}
	if !opts.NoFlush {
		if err := FlushReports(ctx, o); err != nil {
			return nil, err
		}
	}
	conn, err := o.Open(ctx, reach.CrashReportCopyMobile)
	if err != nil {
		return nil, err
	}
	return NewClient(opts.Folder(conn), o.UDID()), nil
}

// NewClient reads the folder through f, an AFC client of a
// crashreportcopymobile connection of the device udid.
func NewClient(f Folder, udid string) *Client {
	return &Client{afc: f, udid: udid}
}

// Close closes the connection.
func (c *Client) Close() error { return c.afc.Close() }

// Entry is one file, folder or link in the crash folder.
type Entry struct {
	Path       string    `json:"path"` // from the folder's root, without a leading "/"
	Type       string    `json:"type"` // "file", "dir", "link" or the device's st_ifmt
	Size       int64     `json:"size"`
	ModTime    time.Time `json:"mtime"`
	LinkTarget string    `json:"linkTarget,omitempty"`
}

func entryOf(p string, fi fs.FileInfo) Entry {
	e := Entry{Path: strings.TrimPrefix(path.Clean("/"+p), "/"), Size: fi.Size(), ModTime: fi.ModTime()}
	switch m := fi.Mode(); {
	case m.IsRegular():
		e.Type = "file"
	case m.IsDir():
		e.Type = "dir"
	case m&fs.ModeSymlink != 0:
		e.Type = "link"
		if lt, ok := fi.(interface{ LinkTarget() string }); ok {
			e.LinkTarget = lt.LinkTarget()
		}
	default:
		e.Type = m.Type().String()
	}
	return e
}

// List walks the folder from root ("" or "/" is the whole folder) down to
// depth levels (0 or less: all), folders before what they hold, in the
// device's order. Entries the device will not show (permission denied, or
// gone between listing and looking: reports come and go) are skipped, as
// go-ios does; any other error ends the walk.
func (c *Client) List(ctx context.Context, root string, depth int) ([]Entry, error) {
	root = "/" + strings.Trim(root, "/")
	var out []Entry
	var walk func(dir string, level int) error
	walk = func(dir string, level int) error {
		names, err := c.afc.ReadDir(ctx, dir)
		if err != nil {
			if skippable(err) {
				return nil
			}
			return fmt.Errorf("crash: %s: list %s: %w", c.udid, dir, err)
		}
		for _, n := range names {
			if strings.ContainsAny(n, "/\x00") {
				return fmt.Errorf("crash: %s: %s lists an entry named %q", c.udid, dir, n)
			}
			p := path.Join(dir, n)
			fi, err := c.afc.Lstat(ctx, p)
			if err != nil {
				if skippable(err) {
					continue
				}
				return fmt.Errorf("crash: %s: %s: %w", c.udid, p, err)
			}
			out = append(out, entryOf(p, fi))
			if fi.IsDir() && (depth <= 0 || level < depth) {
				if err := walk(p, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	fi, err := c.afc.Lstat(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("crash: %s: %s: %w", c.udid, root, err)
	}
	if !fi.IsDir() {
		return []Entry{entryOf(root, fi)}, nil
	}
	return out, walk(root, 1)
}

func skippable(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist)
}

// MaxReport bounds a report read whole (Read): real reports are tens to
// hundreds of kilobytes; sysdiagnose archives are pulled, not read.
const MaxReport = 64 << 20

// Read returns a report's contents.
func (c *Client) Read(ctx context.Context, p string) ([]byte, error) {
	var b bytes.Buffer
	if _, err := c.afc.ReadFile(ctx, p, &limitWriter{w: &b, n: MaxReport}, nil); err != nil {
		return nil, fmt.Errorf("crash: %s: read %s: %w", c.udid, p, err)
	}
	return b.Bytes(), nil
}

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("report larger than %d bytes", MaxReport)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// PullOptions says what Pull copies.
type PullOptions struct {
	// Match, if set, selects files by base name; folders are walked
	// whatever their names.
	Match *regexp.Regexp
	// Erase removes each file from the device once it is copied.
	Erase bool
	// Progress, if set, is told the bytes copied so far and the total of
	// the files selected.
	Progress func(done, total int64)
	// Pulled, if set, is told of each file once it is copied (and erased).
	Pulled func(e Entry, local string)
}

// PullStats sums a pull.
type PullStats struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Pull copies the files under root into the local folder out, keeping the
// device's folder structure (out/<path>) and each file's modification
// time. Files are written atomically with mode 0600 (reports name the
// apps a user runs); links are not followed or copied. A file the device
// will not give is skipped; a local write error stops the pull.
func (c *Client) Pull(ctx context.Context, root, out string, o PullOptions) (PullStats, error) {
	var st PullStats
	entries, err := c.List(ctx, root, 0)
	if err != nil {
		return st, err
	}
	var files []Entry
	var total int64
	for _, e := range entries {
		if e.Type == "file" && (o.Match == nil || o.Match.MatchString(path.Base(e.Path))) {
			files = append(files, e)
			total += e.Size
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return st, fmt.Errorf("crash: %w", err)
	}
	var done int64
	for _, e := range files {
		local, err := LocalPath(out, e.Path)
		if err != nil {
			return st, err
		}
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			return st, fmt.Errorf("crash: %w", err)
		}
		var n int64
		err = atomicfile.WriteFunc(local, 0o600, func(w io.Writer) error {
			var err error
			n, err = c.afc.ReadFile(ctx, e.Path, w, func(k int64) {
				if o.Progress != nil {
					o.Progress(done+k, total)
				}
			})
			if err != nil {
				return deviceError{err}
			}
			return nil
		})
		if err != nil {
			var de deviceError
			if errors.As(err, &de) && skippable(err) {
				continue // gone or refused since the listing
			}
			return st, fmt.Errorf("crash: %s: pull %s: %w", c.udid, e.Path, err)
		}
		if !e.ModTime.IsZero() {
			if err := os.Chtimes(local, e.ModTime, e.ModTime); err != nil {
				return st, fmt.Errorf("crash: %w", err)
			}
		}
		done += n
		st.Files++
		st.Bytes += n
		if o.Erase {
			if err := c.afc.Remove(ctx, e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return st, fmt.Errorf("crash: %s: remove %s: %w", c.udid, e.Path, err)
			}
		}
		if o.Pulled != nil {
			o.Pulled(e, local)
		}
	}
	// Folders keep the device's times too (after their files are in).
	for _, e := range slices.Backward(entries) {
		if e.Type == "dir" && !e.ModTime.IsZero() {
			if local, err := LocalPath(out, e.Path); err == nil {
				os.Chtimes(local, e.ModTime, e.ModTime)
			}
		}
	}
	return st, nil
}

// deviceError marks an error of the device's side of a copy, as opposed
// to one writing the local file.
type deviceError struct{ err error }

func (e deviceError) Error() string { return e.err.Error() }
func (e deviceError) Unwrap() error { return e.err }

// LocalPath is where device path p goes under out: its elements must be
// plain names, so that nothing a device lists lands outside out.
func LocalPath(out, p string) (string, error) {
	parts := strings.Split(p, "/")
	for _, s := range parts {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "\\\x00") {
			return "", fmt.Errorf("crash: the device lists a path %q that cannot be copied safely", p)
		}
	}
	return filepath.Join(append([]string{out}, parts...)...), nil
}

// Clear removes every entry of the folder with all it holds. The device
// recreates com.apple.appstored at once (crash.md §2), so that one may
// stay; any other entry left is an error naming it.
func (c *Client) Clear(ctx context.Context) error {
	names, err := c.afc.ReadDir(ctx, "/")
	if err != nil {
		return fmt.Errorf("crash: %s: list: %w", c.udid, err)
	}
	for _, n := range names {
		if err := c.afc.RemoveAll(ctx, "/"+n); err != nil && !errors.Is(err, fs.ErrNotExist) && n != Appstored {
			return fmt.Errorf("crash: %s: remove %s: %w", c.udid, n, err)
		}
	}
	left, err := c.afc.ReadDir(ctx, "/")
	if err != nil {
		return fmt.Errorf("crash: %s: list: %w", c.udid, err)
	}
	left = slices.DeleteFunc(left, func(n string) bool { return n == Appstored })
	if len(left) > 0 {
		return fmt.Errorf("crash: %s: the folder still holds %s after clearing it", c.udid, strings.Join(left, ", "))
	}
	return nil
}

// Appstored is the folder a device recreates right after it is deleted.
const Appstored = "com.apple.appstored"
