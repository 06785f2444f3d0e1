// Package atomicfile replaces a file's contents so that a crash or a kill
// at any moment leaves either the old contents or the new, never a torn
// file: the data goes to a temporary file in the same folder, which is
// synced, given its mode (and owner), renamed over the target, and the
// folder is synced so that the rename itself survives a power loss.
//
// Temporary files are named "."+base+".tmp-*": hidden, and never ending in
// the target's extension, so folder scans that look for records by suffix
// skip one left behind by a killed writer.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Owner is a numeric owner for chown: the invoking user when running
// under sudo, so that the user's own tools can read what root wrote.
type Owner struct {
	UID, GID int
}

// Option adjusts a Write.
type Option func(*options)

type options struct {
	owner     *Owner
	dirPerm   fs.FileMode
	mkdir     bool
	noReplace bool
}

// WithOwner chowns the file (and a folder MkdirAll creates) to o; nil is
// no change.
func WithOwner(o *Owner) Option { return func(op *options) { op.owner = o } }

// MkdirAll creates the file's folder with perm if it is missing (owned by
// WithOwner's owner, when given, if it was created here).
func MkdirAll(perm fs.FileMode) Option {
	return func(op *options) { op.mkdir, op.dirPerm = true, perm }
}

// NoReplace keeps an existing file: Write then fails with an error
// matching fs.ErrExist, even when another process created the file
// between our check and our write (the temporary file is linked, not
// renamed, into place). On a file system without hard links it falls
// back to a rename, which replaces.
func NoReplace() Option { return func(op *options) { op.noReplace = true } }

// testHookMidWrite, when set (tests only), runs once half of the data is
// in the temporary file.
var testHookMidWrite func()

// Write replaces path's contents with data, atomically, with mode perm.
func Write(path string, data []byte, perm fs.FileMode, opts ...Option) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		half := len(data) / 2
		if _, err := w.Write(data[:half]); err != nil {
			return err
		}
		if testHookMidWrite != nil {
			testHookMidWrite()
		}
		_, err := w.Write(data[half:])
		return err
	}, opts...)
}

// WriteFunc is Write for contents too large to hold in memory (a log
// archive, a crash report being pulled): write streams them into the
// temporary file; if it fails, the target is left as it was.
func WriteFunc(path string, perm fs.FileMode, write func(w io.Writer) error, opts ...Option) (err error) {
	var op options
	for _, o := range opts {
		o(&op)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if op.mkdir {
		if err := mkdir(dir, op.dirPerm, op.owner); err != nil {
			return fmt.Errorf("atomicfile: %w", err)
		}
	}
	// os.CreateTemp creates the file with mode 0600: nobody else can read
	// it before Chmod, whatever perm is.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	tmp := f.Name()
	linked := false
	defer func() {
		if err != nil || linked {
			os.Remove(tmp)
		}
	}()
	if err := fill(f, write, perm, op.owner); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if op.noReplace {
		err := os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("atomicfile: %s: %w", path, fs.ErrExist)
		}
		linked = err == nil
	}
	if !linked {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("atomicfile: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	return nil
}

// fill writes the contents to f, sets its mode and owner and syncs it.
func fill(f *os.File, write func(io.Writer) error, perm fs.FileMode, owner *Owner) error {
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if owner != nil {
		if err := f.Chown(owner.UID, owner.GID); err != nil {
			return err
		}
	}
	return f.Sync()
}

func mkdir(dir string, perm fs.FileMode, owner *Owner) error {
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	if owner != nil && errors.Is(statErr, fs.ErrNotExist) {
		return os.Chown(dir, owner.UID, owner.GID)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
