package afc

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
)

// Confinement (docs/protocols/afc.md §8): every path a host sends is
// resolved lexically against the service's root — a leading "/" or none,
// "." dropped, ".." popped — and one that climbs above the root is
// refused with PERM_DENIED before the file system sees it. What remains
// is opened through an os.Root, which resolves it one component at a time
// relative to the root's descriptor and refuses any symbolic link that
// leads outside, even one swapped in while the request runs. So neither
// "..", absolute paths, links made by MAKE_LINK, nor races move a request
// out of the tree.

// target is a resolved path: a name relative to the os.Root, or the
// virtual top of a server confined to one entry (house_arrest's
// VendDocuments).
type target struct {
	name string // for os.Root; "." is the root itself
	top  bool   // the virtual top: lists only the one entry
}

// resolve turns a wire path into a target; only is the one top-level
// entry a confined server shows ("" for none). ok is false when the path
// leaves the root or, when confined, names another top-level entry.
func resolve(p, only string) (target, bool) {
	var parts []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(parts) == 0 {
				return target{}, false
			}
			parts = parts[:len(parts)-1]
		default:
			parts = append(parts, c)
		}
	}
	if only != "" {
		if len(parts) == 0 {
			return target{top: true}, true
		}
		if parts[0] != only {
			return target{}, false
		}
		parts = parts[1:]
	}
	if len(parts) == 0 {
		return target{name: "."}, true
	}
	return target{name: strings.Join(parts, "/")}, true
}

// statusOf maps a file-system error to the code a device answers.
func statusOf(err error, op Opcode) Status {
	switch {
	case err == nil:
		return StatusSuccess
	case errors.Is(err, fs.ErrNotExist):
		return StatusObjectNotFound
	case errors.Is(err, syscall.ENOTEMPTY):
		// Checked before fs.ErrExist, which ENOTEMPTY also matches.
		return StatusDirNotEmpty
	case errors.Is(err, fs.ErrExist):
		return StatusObjectExists
	case errors.Is(err, syscall.EISDIR):
		return StatusObjectIsDir
	case errors.Is(err, syscall.ENOTDIR):
		switch op {
		case OpReadDir:
			return StatusReadError // listing a file (pmd3's device test)
		case OpMakeDir:
			return StatusObjectExists // a file is in the way
		}
		return StatusObjectNotFound // file/child
	case errors.Is(err, fs.ErrPermission), escapes(err):
		return StatusPermDenied
	case errors.Is(err, errors.ErrUnsupported):
		return StatusOpNotSupported
	case errors.Is(err, syscall.ENOSPC):
		return StatusNoSpaceLeft
	case errors.Is(err, syscall.EWOULDBLOCK):
		return StatusOpWouldBlock
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.EBADF):
		return StatusInvalidArg
	case op == OpRead:
		return StatusReadError
	case op == OpWrite:
		return StatusWriteError
	}
	return StatusIOError
}

// escapes reports os.Root's refusal of a path that leads out of the root
// (a symbolic link to outside). The error has no exported identity; its
// text is stable across Go releases since os.Root's introduction.
func escapes(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}
