//go:build !unix

package afc

import (
	"errors"
	"io/fs"
	"os"
)

func flock(*os.File, LockOp) error { return errors.ErrUnsupported }

func fsSpace(string) (total, free, bsize uint64, err error) { return 0, 0, 4096, nil }

func statExtra(fi fs.FileInfo) (blocks, nlink, birth int64) { return 0, 1, fi.ModTime().UnixNano() }
