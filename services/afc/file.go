package afc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// Mode is FILE_OPEN's mode (docs/protocols/afc.md §5).
type Mode uint64

const (
	ReadOnly        Mode = 1 // "r"
	ReadWrite       Mode = 2 // "r+": create if missing
	WriteOnly       Mode = 3 // "w": create, truncate
	ReadWriteTrunc  Mode = 4 // "w+": create, truncate
	Append          Mode = 5 // "a": create, append
	ReadWriteAppend Mode = 6 // "a+": create, append
)

// LockOp is FILE_LOCK's operation: flock(2) values with the non-blocking
// bit set.
type LockOp uint64

const (
	LockShared    LockOp = 1 | 4
	LockExclusive LockOp = 2 | 4
	LockUnlock    LockOp = 8 | 4
)

// File is an open file on the device. Its methods with a context are the
// primitives; Read, Write, Seek and Close make it an io.ReadWriteSeeker
// bounded by the client's Timeout. A File is not for concurrent use.
type File struct {
	c      *Client
	handle uint64
	path   string
}

// Open opens a file on the device.
func (c *Client) Open(ctx context.Context, path string, mode Mode) (*File, error) {
	cl, err := c.do(ctx, OpFileOpen, path, appendPath(le64(uint64(mode)), path), nil, nil)
	if err != nil {
		return nil, err
	}
	h, err := cl.value(OpFileOpenRes)
	if err != nil {
		return nil, err
	}
	return &File{c: c, handle: h, path: path}, nil
}

// Handle is the device's handle number.
func (f *File) Handle() uint64 { return f.handle }

func (f *File) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), f.c.cfg.Timeout)
}

// ReadContext reads up to len(p) bytes from the current position with one
// READ; it returns io.EOF at the end of the file.
func (f *File) ReadContext(ctx context.Context, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	cl, err := f.c.do(ctx, OpRead, f.path, le64(f.handle, uint64(len(p))), nil, p)
	if err != nil {
		return 0, err
	}
	b, err := cl.payload()
	if err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, io.EOF
	}
	if &b[0] != &p[0] { // the reply used the header part
		return copy(p, b), nil
	}
	return len(b), nil
}

// WriteContext writes p with one WRITE.
func (f *File) WriteContext(ctx context.Context, p []byte) (int, error) {
	cl, err := f.c.do(ctx, OpWrite, f.path, le64(f.handle), p, nil)
	if err != nil {
		return 0, err
	}
	if err := cl.status(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SeekContext moves the position (io.SeekStart, io.SeekCurrent,
// io.SeekEnd) and returns the new one (FILE_SEEK then FILE_TELL, both in
// flight at once).
func (f *File) SeekContext(ctx context.Context, offset int64, whence int) (int64, error) {
	if whence < 0 || whence > 2 {
		return 0, fmt.Errorf("afc: seek %s: whence %d", f.path, whence)
	}
	seek, err := f.c.start(ctx, OpFileSeek, f.path, le64(f.handle, uint64(whence), uint64(offset)), nil, nil)
	if err != nil {
		return 0, err
	}
	tell, err := f.c.start(ctx, OpFileTell, f.path, le64(f.handle), nil, nil)
	if err != nil {
		return 0, err
	}
	if err := f.c.wait(ctx, seek); err != nil {
		return 0, err
	}
	if err := f.c.wait(ctx, tell); err != nil {
		return 0, err
	}
	if err := seek.status(); err != nil {
		return 0, err
	}
	pos, err := tell.value(OpFileTellRes)
	return int64(pos), err
}

// Tell returns the current position.
func (f *File) Tell(ctx context.Context) (int64, error) {
	cl, err := f.c.do(ctx, OpFileTell, f.path, le64(f.handle), nil, nil)
	if err != nil {
		return 0, err
	}
	pos, err := cl.value(OpFileTellRes)
	return int64(pos), err
}

// Truncate sets the file's size (FILE_SET_SIZE).
func (f *File) Truncate(ctx context.Context, size int64) error {
	return f.c.simple(ctx, OpFileSetSize, f.path, le64(f.handle, uint64(size)))
}

// Lock takes or releases an advisory lock without waiting; a lock held
// elsewhere fails with an error that errors.Is ErrWouldBlock.
func (f *File) Lock(ctx context.Context, op LockOp) error {
	return f.c.simple(ctx, OpFileLock, f.path, le64(f.handle, uint64(op)))
}

// CloseContext closes the handle.
func (f *File) CloseContext(ctx context.Context) error {
	return f.c.simple(ctx, OpFileClose, f.path, le64(f.handle))
}

// Read implements io.Reader.
func (f *File) Read(p []byte) (int, error) {
	ctx, cancel := f.ctx()
	defer cancel()
	return f.ReadContext(ctx, p)
}

// Write implements io.Writer.
func (f *File) Write(p []byte) (int, error) {
	ctx, cancel := f.ctx()
	defer cancel()
	return f.WriteContext(ctx, p)
}

// Seek implements io.Seeker.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	ctx, cancel := f.ctx()
	defer cancel()
	return f.SeekContext(ctx, offset, whence)
}

// Close implements io.Closer.
func (f *File) Close() error {
	ctx, cancel := f.ctx()
	defer cancel()
	return f.CloseContext(ctx)
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
