package afc

import (
	"context"
	"io/fs"
	"path"
	"time"
)

// Paths are device paths relative to the service's root (the media folder
// for AFC, an app's container after a house_arrest vend), with or without
// a leading "/"; "." and ".." are resolved by the device, which refuses to
// leave the root.

// ReadDir lists a directory's entries, without "." and "..", in the
// device's order.
func (c *Client) ReadDir(ctx context.Context, path string) ([]string, error) {
	cl, err := c.do(ctx, OpReadDir, path, appendPath(nil, path), nil, nil)
	if err != nil {
		return nil, err
	}
	b, err := cl.payload()
	if err != nil {
		return nil, err
	}
	names := parseNames(b)
	out := names[:0]
	for _, n := range names {
		if n != "." && n != ".." && n != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

// Stat describes a path without following a final symbolic link.
func (c *Client) Stat(ctx context.Context, path string) (FileInfo, error) {
	cl, err := c.do(ctx, OpGetFileInfo, path, appendPath(nil, path), nil, nil)
	if err != nil {
		return FileInfo{}, err
	}
	b, err := cl.payload()
	if err != nil {
		return FileInfo{}, err
	}
	return ParseFileInfo(b)
}

// DeviceInfo reads the device's model and file-system sizes.
func (c *Client) DeviceInfo(ctx context.Context) (DeviceInfo, error) {
	cl, err := c.do(ctx, OpGetDevInfo, "", nil, nil, nil)
	if err != nil {
		return DeviceInfo{}, err
	}
	b, err := cl.payload()
	if err != nil {
		return DeviceInfo{}, err
	}
	return ParseDeviceInfo(b)
}

// Mkdir makes a directory and any missing parents; an existing directory
// is not an error, an existing file is (fs.ErrExist).
func (c *Client) Mkdir(ctx context.Context, path string) error {
	return c.simple(ctx, OpMakeDir, path, appendPath(nil, path))
}

// Remove removes a file, a symbolic link or an empty directory; a
// directory with entries fails with an error that errors.Is
// ErrDirNotEmpty.
func (c *Client) Remove(ctx context.Context, path string) error {
	return c.simple(ctx, OpRemovePath, path, appendPath(nil, path))
}

// RemoveAll removes a path and everything below it in one request.
func (c *Client) RemoveAll(ctx context.Context, path string) error {
	return c.simple(ctx, OpRemovePathAndContents, path, appendPath(nil, path))
}

// Rename moves from to to, replacing a file there.
func (c *Client) Rename(ctx context.Context, from, to string) error {
	return c.simple(ctx, OpRenamePath, from, appendPath(appendPath(nil, from), to))
}

// LinkType is MAKE_LINK's kind.
type LinkType uint64

const (
	HardLink LinkType = 1
	Symlink  LinkType = 2
)

// Link makes link a hard or symbolic link to target. A symbolic link's
// target is stored as given.
func (c *Client) Link(ctx context.Context, typ LinkType, target, link string) error {
	return c.simple(ctx, OpMakeLink, link, appendPath(appendPath(le64(uint64(typ)), target), link))
}

// SetModTime sets a path's modification time.
func (c *Client) SetModTime(ctx context.Context, path string, t time.Time) error {
	return c.simple(ctx, OpSetFileTime, path, appendPath(le64(uint64(t.UnixNano())), path))
}

// Truncate sets a file's size by path (limd's afc_truncate).
func (c *Client) Truncate(ctx context.Context, path string, size int64) error {
	return c.simple(ctx, OpTruncate, path, appendPath(le64(uint64(size)), path))
}

// ConnInfo reads GET_CON_INFO's key/value list (idevice).
func (c *Client) ConnInfo(ctx context.Context) (KV, error) {
	cl, err := c.do(ctx, OpGetConInfo, "", nil, nil, nil)
	if err != nil {
		return nil, err
	}
	b, err := cl.payload()
	if err != nil {
		return nil, err
	}
	return ParseKV(b)
}

// Exists reports whether path exists (a dangling symbolic link exists).
func (c *Client) Exists(ctx context.Context, path string) (bool, error) {
	_, err := c.Stat(ctx, path)
	if err == nil {
		return true, nil
	}
	if isNotExist(err) {
		return false, nil
	}
	return false, err
}

// Lstat is Stat as an fs.FileInfo, for code written against io/fs (the
// crash report folder's walker): Name is path's last element, Mode has the
// type bits, Sys is the FileInfo, and a LinkTarget method gives a link's
// target. Like Stat it does not follow a final link.
func (c *Client) Lstat(ctx context.Context, p string) (fs.FileInfo, error) {
	fi, err := c.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	return statInfo{name: path.Base(path.Clean("/" + p)), fi: fi}, nil
}

// statInfo is a FileInfo as an fs.FileInfo.
type statInfo struct {
	name string
	fi   FileInfo
}

func (s statInfo) Name() string       { return s.name }
func (s statInfo) Size() int64        { return s.fi.Size }
func (s statInfo) Mode() fs.FileMode  { return s.fi.Mode() }
func (s statInfo) ModTime() time.Time { return s.fi.ModTime }
func (s statInfo) IsDir() bool        { return s.fi.IsDir() }
func (s statInfo) Sys() any           { return s.fi }

// LinkTarget is a symbolic link's target, as stored.
func (s statInfo) LinkTarget() string { return s.fi.LinkTarget }
