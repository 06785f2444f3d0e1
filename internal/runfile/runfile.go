//go:build unix

// Package runfile holds the files a running iosmux process owns: the
// private folder they live in, a lock on a folder it must not share with
// another process, its pid file and its log file. Every file is opened
// with O_NOFOLLOW, so a symlink planted where one is expected is refused
// instead of followed (a root daemon must never write through another
// user's link).
package runfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// ErrLocked means another live process holds the lock (or pid file).
var ErrLocked = errors.New("runfile: in use by another process")

// RuntimeDir is the folder for pid and log files: $XDG_RUNTIME_DIR/iosmux
// (xdgRuntimeDir is that variable's value: the command reads the
// environment), /run/iosmux for root, else iosmux-<uid> in the temporary
// folder. PrivateDir makes and checks it.
func RuntimeDir(xdgRuntimeDir string) string {
	switch {
	case xdgRuntimeDir != "":
		return filepath.Join(xdgRuntimeDir, "iosmux")
	case os.Geteuid() == 0:
		return "/run/iosmux"
	}
	return filepath.Join(os.TempDir(), "iosmux-"+strconv.Itoa(os.Geteuid()))
}

// PrivateDir creates dir (mode 0700, parents 0755 as MkdirAll makes them)
// and checks that it is a folder, not a symlink, owned by this process's
// user, with no access for group or others: nobody else can then plant a
// file or a link in it.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("runfile: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("runfile: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return fmt.Errorf("runfile: %s is not a folder (%s): remove it", dir, st.Mode().Type())
	case !ok || int(sys.Uid) != os.Geteuid():
		return fmt.Errorf("runfile: %s belongs to another user (uid %d): remove it, or set XDG_RUNTIME_DIR", dir, sys.Uid)
	case st.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("runfile: %s is open to other users (mode %o): chmod 700 it, or remove it", dir, st.Mode().Perm())
	}
	return nil
}

// Lock is an exclusive lock held by this process on a file (flock), so a
// second process using the same folder is refused while the first lives,
// and a crashed holder leaves nothing stale behind.
type Lock struct {
	f    *os.File
	path string
}

// TryLock takes the lock on path without waiting, creating the file (mode
// 0600) if needed, and writes this process's pid into it. When another
// live process holds it, the error matches ErrLocked and names its pid.
func TryLock(path string) (*Lock, error) {
	for range 3 {
		f, err := openNoFollow(path)
		if err != nil {
			return nil, fmt.Errorf("runfile: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			pid := readPID(f)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, &lockedError{path: path, pid: pid}
			}
			return nil, fmt.Errorf("runfile: lock %s: %w", path, err)
		}
		// The holder before us may have removed the file between our open
		// and our flock: then we hold a lock on nothing. Try again.
		if !samePath(f, path) {
			f.Close()
			continue
		}
		if err := writePID(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("runfile: %s: %w", path, err)
		}
		return &Lock{f: f, path: path}, nil
	}
	return nil, fmt.Errorf("runfile: %s keeps being replaced", path)
}

// Release unlocks; remove also deletes the file (a pid file), which is
// done while the lock is still held. Release is idempotent.
func (l *Lock) Release(remove bool) error {
	if l.f == nil {
		return nil
	}
	var err error
	if remove {
		err = os.Remove(l.path)
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// Holder reports the pid written in the lock file at path and whether a
// live process still holds it.
func Holder(path string) (pid int, held bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	pid = readPID(f)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
		return pid, true
	}
	return pid, false
}

// OpenLog opens a log file for appending, creating it with mode 0600 and
// refusing a symlink.
func OpenLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("runfile: %w", err)
	}
	return f, nil
}

type lockedError struct {
	path string
	pid  int
}

func (e *lockedError) Error() string {
	if e.pid > 0 {
		return fmt.Sprintf("runfile: %s is in use by process %d", e.path, e.pid)
	}
	return fmt.Sprintf("runfile: %s is in use by another process", e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// PID is the holder's process id (0 if it wrote none).
func (e *lockedError) PID() int { return e.pid }

// openNoFollow creates path exclusively (O_EXCL) or opens the existing
// file, never through a symlink.
func openNoFollow(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}

// samePath reports whether path still names f's file.
func samePath(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, _ := strconv.Atoi(string(bytes.TrimSpace(b[:n])))
	return pid
}
