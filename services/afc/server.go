package afc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
)

// ServerConfig configures the device role.
type ServerConfig struct {
	// Root is the folder served: the media folder for AFC, an app's
	// container for house_arrest. Nothing outside it can be reached.
	Root string
	// Only, if set, confines the service to Root's one entry of that name
	// (house_arrest's VendDocuments: "Documents"): the root lists only it,
	// every other top-level path is refused with PERM_DENIED, and symbolic
	// links cannot leave it.
	Only string
	// DeviceInfo answers GET_DEVINFO; nil reports Model "iPhone" and the
	// sizes of the file system holding Root.
	DeviceInfo func() DeviceInfo
	// MaxWrite bounds one WRITE's data part (streamed to the file, never
	// buffered); 0 means DefaultMaxWrite. A larger one closes the
	// connection.
	MaxWrite int64
	// MaxRead bounds one READ reply; a READ asking for more is answered
	// with at most this many bytes. 0 means DefaultMaxRead.
	MaxRead int
	// MaxHandles bounds the files one connection holds open; 0 means
	// DefaultMaxHandles. Beyond it FILE_OPEN answers NO_RESOURCES.
	MaxHandles int
	// Timeout bounds reading the rest of a request once its header has
	// arrived, and writing each reply; 0 means DefaultTimeout. The wait
	// for the next request is bounded only by the context.
	Timeout time.Duration
	// Logger receives per-connection debug logs; nil discards.
	Logger *slog.Logger
}

// Server-side defaults (docs/protocols/afc.md §7: hosts send WRITEs of up
// to 1 GiB; pmd3 splits READs at 4 MiB and counts a short reply as the
// whole chunk, so a device must answer at least that much).
const (
	DefaultMaxWrite   = 1 << 30
	DefaultMaxRead    = 16 << 20
	DefaultMaxHandles = 256
	// maxReqArgs bounds a request's header part (two paths and a few
	// numbers).
	maxReqArgs = 64 << 10
	// maxReqData bounds the data part of a request other than WRITE, which
	// none should have; it is read and dropped.
	maxReqData = 64 << 10
)

// Server is the device role of AFC over one folder. It keeps no state
// between connections; each connection has its own handles. Safe for
// concurrent use.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
}

// NewServer checks the configuration.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Root == "" {
		return nil, errors.New("afc: server without a root folder")
	}
	if cfg.MaxWrite <= 0 {
		cfg.MaxWrite = DefaultMaxWrite
	}
	if cfg.MaxRead <= 0 {
		cfg.MaxRead = DefaultMaxRead
	}
	if cfg.MaxHandles <= 0 {
		cfg.MaxHandles = DefaultMaxHandles
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log}, nil
}

// Serve answers requests on conn (positioned after RSDCheckin,
// StartService or a house_arrest vend) until the host hangs up, sends a
// malformed packet, or ctx ends; it closes nothing but the files it
// opened. Requests are answered in order.
func (s *Server) Serve(ctx context.Context, conn net.Conn) error {
	dir := s.cfg.Root
	if s.cfg.Only != "" {
		dir = dir + string(os.PathSeparator) + s.cfg.Only
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("afc: serving %s: %w", dir, err)
	}
	sc := &serverConn{s: s, conn: conn, root: root, handles: map[uint64]*handle{}, next: 1,
		br: bufio.NewReaderSize(conn, 256<<10), bw: bufio.NewWriterSize(conn, 64<<10)}
	stop := deadline.Interrupt(ctx, conn.SetDeadline)
	defer stop()
	err = sc.run()
	sc.closeAll()
	root.Close()
	if ctx.Err() != nil || isEOF(err) {
		return nil
	}
	s.log.Debug("afc: connection ended", "err", err)
	return err
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}

type handle struct {
	f    *os.File
	path string
}

type serverConn struct {
	s       *Server
	conn    net.Conn
	root    *os.Root
	br      *bufio.Reader
	bw      *bufio.Writer
	handles map[uint64]*handle
	next    uint64
	hdr     [HeaderSize]byte
	args    []byte
	buf     []byte // READ replies and WRITE copies
}

func (c *serverConn) closeAll() {
	for _, h := range c.handles {
		h.f.Close()
	}
	clear(c.handles)
}

// errClose ends the connection after a request the device cannot parse
// (docs/protocols/afc.md §8, SIM: bad magic, bad lengths, a header part
// too short for its opcode).
type errClose struct{ err error }

func (e errClose) Error() string { return e.err.Error() }

func closef(format string, a ...any) error { return errClose{fmt.Errorf(format, a...)} }

func (c *serverConn) run() error {
	for {
		// Replies to pipelined requests go out together; flush before
		// waiting for a request that is not here yet.
		if c.br.Buffered() < HeaderSize {
			if err := c.flush(); err != nil {
				return err
			}
		}
		c.conn.SetReadDeadline(time.Time{})
		if _, err := io.ReadFull(c.br, c.hdr[:]); err != nil {
			return err
		}
		h, err := ParseHeader(c.hdr[:])
		if err != nil {
			return err
		}
		if h.ArgsLen() > maxReqArgs {
			return closef("afc: %s request with a %d-byte header part", h.Op, h.ArgsLen())
		}
		c.conn.SetReadDeadline(time.Now().Add(c.s.cfg.Timeout))
		c.args = grow(c.args, int(h.ArgsLen()))
		if _, err := io.ReadFull(c.br, c.args); err != nil {
			return err
		}
		if h.Op == OpWrite {
			if h.DataLen() > uint64(c.s.cfg.MaxWrite) {
				return closef("afc: WRITE of %d bytes, at most %d", h.DataLen(), c.s.cfg.MaxWrite)
			}
		} else if h.DataLen() > 0 {
			if h.DataLen() > maxReqData {
				return closef("afc: %s request with a %d-byte data part", h.Op, h.DataLen())
			}
			if _, err := io.CopyN(io.Discard, c.br, int64(h.DataLen())); err != nil {
				return err
			}
		}
		if err := c.handle(h); err != nil {
			return err
		}
	}
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func (c *serverConn) flush() error {
	if c.bw.Buffered() == 0 {
		return nil
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.Timeout))
	return c.bw.Flush()
}

// reply queues one packet: args in the header part, data in the data
// part (docs/protocols/afc.md §2: where each reply kind puts its value).
func (c *serverConn) reply(num uint64, op Opcode, args, data []byte) error {
	var hb [HeaderSize]byte
	c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.Timeout))
	c.bw.Write(AppendHeader(hb[:0], num, op, len(args), len(data)))
	c.bw.Write(args)
	if _, err := c.bw.Write(data); err != nil {
		return err
	}
	return nil
}

func (c *serverConn) status(num uint64, st Status) error {
	return c.reply(num, OpStatus, le64(uint64(st)), nil)
}

// path reads the path argument (up to the first NUL or the end) at off,
// resolved; a path leaving the root answers PERM_DENIED, which the
// caller sends.
func (c *serverConn) path(off int) (target, []byte, bool) {
	p, rest := cutString(c.args[off:])
	t, ok := resolve(p, c.s.cfg.Only)
	return t, rest, ok
}

// handle answers one request whose header part is in c.args and, for
// WRITE, whose data part is still on the wire.
func (c *serverConn) handle(h Header) error {
	a := c.args
	need := func(n int) error {
		if len(a) < n {
			return closef("afc: %s with a %d-byte header part, want at least %d", h.Op, len(a), n)
		}
		return nil
	}
	switch h.Op {
	case OpReadDir:
		t, _, ok := c.path(0)
		if !ok {
			return c.status(h.Num, StatusPermDenied)
		}
		names, err := c.readDir(t)
		if err != nil {
			return c.status(h.Num, statusOf(err, h.Op))
		}
		var b []byte
		for _, n := range names {
			b = appendPath(b, n)
		}
		return c.reply(h.Num, OpData, nil, b)

	case OpGetFileInfo:
		t, _, ok := c.path(0)
		if !ok {
			return c.status(h.Num, StatusPermDenied)
		}
		kv, err := c.stat(t)
		if err != nil {
			return c.status(h.Num, statusOf(err, h.Op))
		}
		return c.reply(h.Num, OpData, nil, kv.Append(nil))

	case OpGetDevInfo:
		return c.reply(h.Num, OpData, nil, c.deviceInfo().KV().Append(nil))

	case OpMakeDir:
		return c.onPath(h, 0, func(t target) error { return c.root.MkdirAll(t.name, 0o755) })

	case OpRemovePath:
		return c.onPath(h, 0, func(t target) error {
			if t.name == "." {
				return fs.ErrPermission
			}
			return c.root.Remove(t.name)
		})

	case OpRemovePathAndContents:
		return c.onPath(h, 0, func(t target) error {
			if t.name == "." {
				return fs.ErrPermission
			}
			if _, err := c.root.Lstat(t.name); err != nil {
				return err
			}
			return c.root.RemoveAll(t.name)
		})

	case OpRenamePath:
		from, rest, ok1 := c.path(0)
		to, ok2 := resolve(cutFirst(rest), c.s.cfg.Only)
		if !ok1 || !ok2 || from.top || to.top || from.name == "." || to.name == "." {
			return c.status(h.Num, StatusPermDenied)
		}
		return c.status(h.Num, statusOf(c.root.Rename(from.name, to.name), h.Op))

	case OpMakeLink:
		if err := need(8); err != nil {
			return err
		}
		typ, _ := u64(a, 0)
		tgt, rest := cutString(a[8:])
		link, ok := resolve(cutFirst(rest), c.s.cfg.Only)
		if !ok || link.top || link.name == "." {
			return c.status(h.Num, StatusPermDenied)
		}
		var err error
		switch LinkType(typ) {
		case HardLink:
			t, ok := resolve(tgt, c.s.cfg.Only)
			if !ok || t.top {
				return c.status(h.Num, StatusPermDenied)
			}
			err = c.root.Link(t.name, link.name)
		case Symlink:
			// Stored as given: following it later goes through the
			// os.Root, which refuses a target outside.
			err = c.root.Symlink(tgt, link.name)
		default:
			return c.status(h.Num, StatusInvalidArg)
		}
		return c.status(h.Num, statusOf(err, h.Op))

	case OpSetFileTime:
		if err := need(8); err != nil {
			return err
		}
		ns, _ := u64(a, 0)
		return c.onPath(h, 8, func(t target) error {
			tm := time.Unix(0, int64(ns))
			return c.root.Chtimes(t.name, tm, tm)
		})

	case OpTruncate:
		if err := need(8); err != nil {
			return err
		}
		size, _ := u64(a, 0)
		return c.onPath(h, 8, func(t target) error {
			if int64(size) < 0 {
				return fs.ErrInvalid
			}
			f, err := c.root.OpenFile(t.name, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(int64(size))
		})

	case OpFileOpen:
		if err := need(8); err != nil {
			return err
		}
		mode, _ := u64(a, 0)
		t, _, ok := c.path(8)
		if !ok || t.top {
			return c.status(h.Num, StatusPermDenied)
		}
		hn, st := c.open(t, Mode(mode))
		if st != StatusSuccess {
			return c.status(h.Num, st)
		}
		return c.reply(h.Num, OpFileOpenRes, le64(hn), nil)

	case OpRead:
		hd, v, err := c.handleArgs(h, 2)
		if err != nil || hd == nil {
			return c.invalid(h, err)
		}
		n := min(v[1], uint64(c.s.cfg.MaxRead))
		c.buf = grow(c.buf, int(n))
		got, err := io.ReadFull(hd.f, c.buf)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return c.status(h.Num, statusOf(err, h.Op))
		}
		return c.reply(h.Num, OpData, nil, c.buf[:got])

	case OpWrite:
		hd, _, err := c.handleArgs(h, 1)
		if err != nil {
			return err
		}
		st, err := c.write(hd, int64(h.DataLen()))
		if err != nil {
			return err
		}
		return c.status(h.Num, st)

	case OpFileSeek:
		hd, v, err := c.handleArgs(h, 3)
		if err != nil || hd == nil || v[1] > 2 {
			return c.invalid(h, err)
		}
		_, err = hd.f.Seek(int64(v[2]), int(v[1]))
		return c.status(h.Num, statusOf(err, h.Op))

	case OpFileTell:
		hd, _, err := c.handleArgs(h, 1)
		if err != nil || hd == nil {
			return c.invalid(h, err)
		}
		pos, err := hd.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return c.status(h.Num, statusOf(err, h.Op))
		}
		return c.reply(h.Num, OpFileTellRes, le64(uint64(pos)), nil)

	case OpFileSetSize:
		hd, v, err := c.handleArgs(h, 2)
		if err != nil || hd == nil || int64(v[1]) < 0 {
			return c.invalid(h, err)
		}
		return c.status(h.Num, statusOf(hd.f.Truncate(int64(v[1])), h.Op))

	case OpFileLock:
		hd, v, err := c.handleArgs(h, 2)
		if err != nil || hd == nil {
			return c.invalid(h, err)
		}
		return c.status(h.Num, statusOf(flock(hd.f, LockOp(v[1])), h.Op))

	case OpFileClose:
		hd, v, err := c.handleArgs(h, 1)
		if err != nil || hd == nil {
			return c.invalid(h, err)
		}
		delete(c.handles, v[0])
		return c.status(h.Num, statusOf(hd.f.Close(), h.Op))
	}
	if h.Op.defined() {
		return c.status(h.Num, StatusOpNotSupported)
	}
	return c.status(h.Num, StatusUnknownPacketType)
}

// handleArgs reads a handle operation's header part: the handle, then
// words-1 more u64s. A part too short closes the connection; a handle that
// is not open comes back nil (INVALID_ARG for the caller to send).
func (c *serverConn) handleArgs(h Header, words int) (*handle, []uint64, error) {
	if len(c.args) < 8*words {
		return nil, nil, closef("afc: %s with a %d-byte header part, want at least %d", h.Op, len(c.args), 8*words)
	}
	v := make([]uint64, words)
	for i := range v {
		v[i], _ = u64(c.args, i)
	}
	return c.handles[v[0]], v, nil
}

// cutFirst is the string up to the first NUL of b.
func cutFirst(b []byte) string { s, _ := cutString(b); return s }

// invalid answers a handle operation that cannot go ahead: err (a
// malformed request) ends the connection, otherwise INVALID_ARG.
func (c *serverConn) invalid(h Header, err error) error {
	if err != nil {
		return err
	}
	return c.status(h.Num, StatusInvalidArg)
}

// onPath runs f on the path at offset off and answers its status.
func (c *serverConn) onPath(h Header, off int, f func(target) error) error {
	t, _, ok := c.path(off)
	if !ok || t.top {
		return c.status(h.Num, StatusPermDenied)
	}
	return c.status(h.Num, statusOf(f(t), h.Op))
}

func (c *serverConn) readDir(t target) ([]string, error) {
	if t.top {
		return []string{".", "..", c.s.cfg.Only}, nil
	}
	f, err := c.root.Open(t.name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return append([]string{".", ".."}, names...), nil
}

// stat answers GET_FILE_INFO without following a final link: st_size,
// st_blocks, st_nlink, st_ifmt, st_mtime, st_birthtime (idevice requires
// all six), and for a link its target under each spelling the references
// read (docs/protocols/afc.md §6; SIM: the device's own key is
// unconfirmed, so all three are sent).
func (c *serverConn) stat(t target) (KV, error) {
	var fi fs.FileInfo
	var err error
	if t.top {
		fi, err = os.Stat(c.s.cfg.Root)
	} else {
		fi, err = c.root.Lstat(t.name)
	}
	if err != nil {
		return nil, err
	}
	blocks, nlink, birth := statExtra(fi)
	typ := TypeRegular
	size := fi.Size()
	switch m := fi.Mode(); {
	case m.IsDir():
		// SIM: APFS reports small directory sizes; pmd3's device test
		// sees 64 or 68.
		typ, size = TypeDir, 64
	case m&fs.ModeSymlink != 0:
		typ = TypeSymlink
	case m&fs.ModeNamedPipe != 0:
		typ = TypeFIFO
	case m&fs.ModeSocket != 0:
		typ = TypeSocket
	case m&fs.ModeCharDevice != 0:
		typ = TypeChar
	case m&fs.ModeDevice != 0:
		typ = TypeBlock
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	kv := KV{{"st_size", itoa(size)}, {"st_blocks", itoa(blocks)}, {"st_nlink", itoa(nlink)},
		{"st_ifmt", typ}, {"st_mtime", itoa(fi.ModTime().UnixNano())}, {"st_birthtime", itoa(birth)}}
	if typ == TypeSymlink {
		if tgt, err := c.root.Readlink(t.name); err == nil {
			for _, k := range linkTargetKeys {
				kv = append(kv, KeyValue{k, tgt})
			}
		}
	}
	return kv, nil
}

func (c *serverConn) deviceInfo() DeviceInfo {
	if c.s.cfg.DeviceInfo != nil {
		return c.s.cfg.DeviceInfo()
	}
	total, free, bs, _ := fsSpace(c.s.cfg.Root)
	return DeviceInfo{Model: "iPhone", TotalBytes: total, FreeBytes: free, BlockSize: bs}
}

var openFlags = map[Mode]int{
	ReadOnly:        os.O_RDONLY,
	ReadWrite:       os.O_RDWR | os.O_CREATE,
	WriteOnly:       os.O_WRONLY | os.O_CREATE | os.O_TRUNC,
	ReadWriteTrunc:  os.O_RDWR | os.O_CREATE | os.O_TRUNC,
	Append:          os.O_WRONLY | os.O_CREATE | os.O_APPEND,
	ReadWriteAppend: os.O_RDWR | os.O_CREATE | os.O_APPEND,
}

// open answers FILE_OPEN: handles start at 1 (libimobiledevice's
// ideviceinstaller treats a 0 handle as a failure).
func (c *serverConn) open(t target, mode Mode) (uint64, Status) {
	flags, ok := openFlags[mode]
	if !ok {
		return 0, StatusInvalidArg
	}
	if len(c.handles) >= c.s.cfg.MaxHandles {
		return 0, StatusNoResources
	}
	f, err := c.root.OpenFile(t.name, flags, 0o644)
	if err != nil {
		return 0, statusOf(err, OpFileOpen)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil && fi.IsDir() {
			return 0, StatusObjectIsDir
		}
		return 0, StatusInvalidArg
	}
	hn := c.next
	c.next++
	c.handles[hn] = &handle{f: f, path: t.name}
	return hn, StatusSuccess
}

// write streams a WRITE's n data bytes from the connection into hd. The
// data part is read in full whatever happens, so the next request lines
// up; a file error becomes the status. A connection error is returned.
func (c *serverConn) write(hd *handle, n int64) (Status, error) {
	c.buf = grow(c.buf, min(int(n), 1<<20))
	c.buf = c.buf[:cap(c.buf)]
	st := StatusSuccess
	if hd == nil {
		st = StatusInvalidArg
	}
	for n > 0 {
		k := min(int64(len(c.buf)), n)
		c.conn.SetReadDeadline(time.Now().Add(c.s.cfg.Timeout))
		got, err := io.ReadFull(c.br, c.buf[:k])
		if err != nil {
			return 0, err
		}
		n -= int64(got)
		if st != StatusSuccess {
			continue
		}
		if _, err := hd.f.Write(c.buf[:got]); err != nil {
			st = statusOf(err, OpWrite)
		}
	}
	return st, nil
}
