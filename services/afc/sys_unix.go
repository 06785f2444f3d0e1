//go:build unix

package afc

import (
	"io/fs"
	"os"
	"syscall"
)

// flock takes or releases an advisory lock without waiting.
func flock(f *os.File, op LockOp) error {
	how := int(op) &^ syscall.LOCK_NB
	switch how {
	case syscall.LOCK_SH, syscall.LOCK_EX, syscall.LOCK_UN:
	default:
		return syscall.EINVAL
	}
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := conn.Control(func(fd uintptr) { ferr = syscall.Flock(int(fd), how|syscall.LOCK_NB) }); err != nil {
		return err
	}
	return ferr
}

// fsSpace reports the file system holding dir: total and free bytes and
// its block size.
func fsSpace(dir string) (total, free, bsize uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, 0, err
	}
	bs := uint64(st.Bsize)
	return uint64(st.Blocks) * bs, uint64(st.Bavail) * bs, bs, nil
}

// statExtra reads st_blocks, st_nlink and the birth time (the change time
// where the system keeps no birth time) from fi.
func statExtra(fi fs.FileInfo) (blocks, nlink, birth int64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 1, fi.ModTime().UnixNano()
	}
	birth = birthNanos(st)
	if birth == 0 {
		birth = fi.ModTime().UnixNano()
	}
	return int64(st.Blocks), int64(st.Nlink), birth
}
