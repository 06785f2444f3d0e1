package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// Under sudo, iosmux runs as root with the invoking user's folders: the
// state folder (~/.local/state/iosmux) and the pair records
// (~/.pymobiledevice3) are the user's, and so must be everything root
// creates in them, or every later command without sudo fails with
// "permission denied". pymobiledevice3 chowns its folder back the same way.

// lookupHome is the home folder of a user by name (a test replaces it).
var lookupHome = func(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", err
	}
	if u.HomeDir == "" {
		return "", fmt.Errorf("user %s has no home folder", name)
	}
	return u.HomeDir, nil
}

// sudoOwner is the invoking user when running as root under sudo (SUDO_UID
// and SUDO_GID), nil otherwise.
func sudoOwner(a *app) *pairing.FileOwner {
	uid, err1 := strconv.Atoi(a.getenv("SUDO_UID"))
	gid, err2 := strconv.Atoi(a.getenv("SUDO_GID"))
	if err1 != nil || err2 != nil || os.Geteuid() != 0 || uid == 0 {
		return nil
	}
	return &pairing.FileOwner{UID: uid, GID: gid}
}

// invokingHome is the home folder of whoever ran the command: SUDO_USER's
// under sudo, else $HOME, else the OS's idea of it.
func invokingHome(a *app) (string, error) {
	if su := a.getenv("SUDO_USER"); su != "" && os.Geteuid() == 0 {
		if h, err := lookupHome(su); err == nil {
			return h, nil
		}
	}
	if h := a.getenv("HOME"); h != "" {
		return h, nil
	}
	return os.UserHomeDir()
}

// loadHostUUID reads (or creates) the host's RSD identity in the state
// folder dir, creating the folder as needed and, under sudo, giving what
// it created back to the invoking user.
func loadHostUUID(a *app, dir string) (xpc.UUID, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return xpc.UUID{}, stateDirError(dir, err)
	}
	u, err := rsd.LoadOrCreateHostUUID(dir)
	if err != nil {
		return xpc.UUID{}, stateDirError(dir, err)
	}
	chownBack(a, dir)
	return u, nil
}

// chownBack gives every file and folder root created at dir and below
// (and dir's parents up to the user's home) back to the invoking user
// under sudo; it does nothing otherwise. Links are not followed.
func chownBack(a *app, dir string) {
	o := sudoOwner(a)
	if o == nil {
		return
	}
	give := func(path string) {
		st, err := os.Lstat(path)
		if err != nil {
			return
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid == 0 {
			if err := os.Lchown(path, o.UID, o.GID); err != nil {
				a.log.Warn("could not give a file back to the sudo user", "path", path, "err", err)
			}
		}
	}
	if home, err := invokingHome(a); err == nil {
		// The parents MkdirAll made inside the user's home (~/.local,
		// ~/.local/state).
		for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
			rel, err := filepath.Rel(home, p)
			if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				break
			}
			give(p)
		}
	}
	filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err == nil {
			give(path)
		}
		return nil
	})
}

// stateDirError says what to do about a state folder this user may not
// write (usually left behind, root's, by an earlier sudo).
func stateDirError(dir string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: the state folder %s (or a file in it) is not yours, probably made by an earlier 'sudo iosmux': give it back with 'sudo chown -R %s %s', or use another one with --state-dir", err, dir, currentUser(), dir)
	}
	return err
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "$USER"
}
