package xpc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/net/http2"
)

// readResult is one frame (or the read error) handed from the reader
// goroutine to the owner. desc names the frame being read when err is set.
type readResult struct {
	f    http2.Frame
	err  error
	desc string
}

// frameReader sits between the Framer and the socket. Between frames it
// waits without a deadline (a quiet peer is legitimate); once the first byte
// of a frame arrived, the rest must follow within the frame timeout, so a
// peer that stalls mid-frame is caught. It remembers the frame header so the
// error can name the frame.
type frameReader struct {
	nc      net.Conn
	r       *bufio.Reader
	timeout time.Duration
	n       int // bytes of the current frame read so far
	hdr     [9]byte
}

func (r *frameReader) Read(p []byte) (int, error) {
	if r.n == 0 && r.r.Buffered() == 0 {
		if err := r.nc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, os.ErrNoDeadline) {
			return 0, err
		}
	}
	k, err := r.r.Read(p)
	if k > 0 {
		if r.n == 0 {
			// Ignore failures: a conn without deadlines still works, it
			// just cannot detect a stall.
			_ = r.nc.SetReadDeadline(time.Now().Add(r.timeout))
		}
		if r.n < len(r.hdr) {
			copy(r.hdr[r.n:], p[:k])
		}
		r.n += k
	}
	return k, err
}

// next starts a new frame.
func (r *frameReader) next() { r.n = 0 }

// describe names what was being read when an error occurred.
func (r *frameReader) describe(what string) string {
	if r.n < len(r.hdr) {
		if r.n == 0 {
			return "reading " + what
		}
		return fmt.Sprintf("reading %s header (%d of 9 bytes)", what, r.n)
	}
	length := int(r.hdr[0])<<16 | int(r.hdr[1])<<8 | int(r.hdr[2])
	stream := binary.BigEndian.Uint32(r.hdr[5:]) & (1<<31 - 1)
	return fmt.Sprintf("reading %s frame on stream %d (%d of %d payload bytes)",
		http2.FrameType(r.hdr[3]), stream, r.n-9, length)
}

// readLoop reads frames and hands them to the owner one at a time, waiting
// for readMore before the next (a DataFrame's payload is valid only until the
// next ReadFrame; the pause is also how the owner applies backpressure).
func (c *Conn) readLoop() {
	defer c.wg.Done()
	fr := &frameReader{nc: c.nc, r: bufio.NewReaderSize(c.nc, 32<<10), timeout: c.cfg.FrameTimeout}
	hand := func(r readResult) bool {
		select {
		case c.frames <- r:
			return r.err == nil
		case <-c.done:
			return false
		}
	}
	if !c.client {
		var p [len(http2.ClientPreface)]byte
		if _, err := io.ReadFull(fr, p[:]); err != nil {
			hand(readResult{err: readErr(err), desc: fmt.Sprintf("reading client preface (%d of %d bytes)", fr.n, len(p))})
			return
		}
		if string(p[:]) != http2.ClientPreface {
			hand(readResult{err: fmt.Errorf("bad client preface %q", p[:]), desc: "reading client preface"})
			return
		}
		fr.next()
	}
	framer := http2.NewFramer(nil, fr)
	// Peers send DATA frames of any size (xpc.md §1.4): accept the maximum.
	framer.SetMaxReadFrameSize(1<<24 - 1)
	for {
		f, err := framer.ReadFrame()
		if err != nil {
			hand(readResult{err: readErr(err), desc: fr.describe("frame")})
			return
		}
		fr.next()
		if !hand(readResult{f: f}) {
			return
		}
		select {
		case <-c.readMore:
		case <-c.done:
			return
		}
	}
}

// readErr makes socket errors read well.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("peer closed the connection: %w", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("peer stalled mid-frame: %w", err)
	}
	return err
}

// writeLoop performs the owner's writes, one batch at a time, so the owner
// never blocks on a peer that does not read.
func (c *Conn) writeLoop(batches <-chan []byte) {
	defer c.wg.Done()
	for {
		select {
		case b := <-batches:
			_, err := c.nc.Write(b)
			c.writeDone <- err // buffered: one batch in flight at most
		case <-c.done:
			return
		}
	}
}
