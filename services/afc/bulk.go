package afc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Bulk transfers keep several READs or WRITEs of one file in flight
// (Window of them, ChunkSize each), so a transfer is not a round trip per
// chunk: go-ios waits for each 32 KiB WRITE's STATUS before the next, and
// that wait, not the link, is what bounds its speed.

var chunkPool sync.Map // chunk size → *sync.Pool of []byte

func getChunk(n int) []byte {
	p, _ := chunkPool.LoadOrStore(n, &sync.Pool{New: func() any { b := make([]byte, n); return &b }})
	return *(p.(*sync.Pool).Get().(*[]byte))
}

func putChunk(b []byte) {
	if p, ok := chunkPool.Load(cap(b)); ok {
		b = b[:cap(b)]
		p.(*sync.Pool).Put(&b)
	}
}

// WriteFile creates (or truncates) path and writes everything r yields,
// with up to Window WRITEs in flight. progress, if set, is told of every
// chunk the device has acknowledged. It returns the bytes written.
func (c *Client) WriteFile(ctx context.Context, path string, r io.Reader, progress func(n int64)) (int64, error) {
	f, err := c.Open(ctx, path, WriteOnly)
	if err != nil {
		return 0, err
	}
	n, err := f.writeFrom(ctx, r, progress)
	if cerr := f.CloseContext(ctx); err == nil {
		err = cerr
	}
	return n, err
}

// writeFrom writes r's bytes at the current position, pipelined.
func (f *File) writeFrom(ctx context.Context, r io.Reader, progress func(n int64)) (int64, error) {
	buf := getChunk(f.c.cfg.ChunkSize)
	defer putChunk(buf)
	type pending struct {
		cl *call
		n  int
	}
	var (
		inflight []pending
		done     int64
	)
	collect := func() error {
		p := inflight[0]
		inflight = inflight[1:]
		if err := f.c.wait(ctx, p.cl); err != nil {
			return err
		}
		if err := p.cl.status(); err != nil {
			return err
		}
		done += int64(p.n)
		if progress != nil {
			progress(int64(p.n))
		}
		return nil
	}
	var rerr error
	for rerr == nil {
		var n int
		n, rerr = io.ReadFull(r, buf)
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			rerr = io.EOF
		} else if rerr != nil {
			rerr = fmt.Errorf("afc: writing %s: reading the source: %w", f.path, rerr)
		}
		if n == 0 {
			break
		}
		for len(inflight) >= f.c.cfg.Window {
			if err := collect(); err != nil {
				return done, err
			}
		}
		// start has put buf on the wire when it returns: buf is free.
		cl, err := f.c.start(ctx, OpWrite, f.path, le64(f.handle), buf[:n], nil)
		if err != nil {
			return done, err
		}
		inflight = append(inflight, pending{cl, n})
	}
	for len(inflight) > 0 {
		if err := collect(); err != nil {
			return done, err
		}
	}
	if rerr != io.EOF {
		return done, rerr
	}
	return done, nil
}

// ReadFile reads path to its end into w, with up to Window READs in
// flight. progress, if set, is told of every chunk written to w. It
// returns the bytes copied.
func (c *Client) ReadFile(ctx context.Context, path string, w io.Writer, progress func(n int64)) (int64, error) {
	f, err := c.Open(ctx, path, ReadOnly)
	if err != nil {
		return 0, err
	}
	n, err := f.readTo(ctx, w, -1, progress)
	if cerr := f.CloseContext(ctx); err == nil {
		err = cerr
	}
	return n, err
}

// readTo copies from the current position to the end, or limit bytes
// when limit >= 0, pipelined. READs of one handle are served in order,
// each from where the previous ended, so the replies arrive as consecutive
// chunks. A reply shorter than asked may be the end of the file or a
// device that caps its replies: the reader stops sending, drains what is
// in flight, and finishes only on an empty reply (or the limit);
// otherwise it sends the next batch from where the data ended.
func (f *File) readTo(ctx context.Context, w io.Writer, limit int64, progress func(n int64)) (int64, error) {
	size := f.c.cfg.ChunkSize
	var (
		inflight  []*call
		done      int64
		requested int64
		stop      bool // a short reply came: drain before sending more
		lastEmpty bool
	)
	defer func() {
		// Buffers of calls still in flight belong to the reader until
		// their replies land; wait for them (or the connection's end).
		for _, cl := range inflight {
			<-cl.done
			putChunk(cl.buf)
		}
	}()
	for {
		for !stop && len(inflight) < f.c.cfg.Window {
			n := size
			if limit >= 0 {
				if requested >= limit {
					break
				}
				n = int(min(int64(size), limit-requested))
			}
			buf := getChunk(size)[:n]
			cl, err := f.c.start(ctx, OpRead, f.path, le64(f.handle, uint64(n)), nil, buf)
			if err != nil {
				putChunk(buf)
				return done, err
			}
			inflight = append(inflight, cl)
			requested += int64(n)
		}
		if len(inflight) == 0 {
			if lastEmpty || limit >= 0 && done >= limit {
				return done, nil
			}
			stop, requested = false, done
			continue
		}
		cl := inflight[0]
		if err := f.c.wait(ctx, cl); err != nil {
			return done, err
		}
		inflight = inflight[1:]
		b, err := cl.payload()
		if err != nil {
			putChunk(cl.buf)
			return done, err
		}
		lastEmpty = len(b) == 0
		if len(b) < len(cl.buf) {
			stop = true
		}
		if len(b) > 0 {
			if _, err := w.Write(b); err != nil {
				putChunk(cl.buf)
				return done, fmt.Errorf("afc: reading %s: %w", f.path, err)
			}
			done += int64(len(b))
			if progress != nil {
				progress(int64(len(b)))
			}
		}
		putChunk(cl.buf)
	}
}
