package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The wire log (--wire-log FILE) is for studying what CoreDeviceService
// and other clients say: every connection the backend serves or opens is
// tapped, and each HTTP/2 frame and each complete XPC message on it is one
// JSON line. Connections that do not start with the HTTP/2 preface (lockdown
// shims, raw services) log only their opening and closing with byte counts.
//
//	{"time":…,"conn":3,"name":"rsd 127.0.0.1:51234","event":"open","local":…,"remote":…}
//	{"time":…,"conn":3,"dir":"recv","frame":{"type":"SETTINGS","stream":0,"flags":"0x00","length":12}}
//	{"time":…,"conn":3,"dir":"recv","stream":1,"message":{"flags":"0x00000001","id":0,"body":{}}}
//	{"time":…,"conn":3,"event":"close","sent":14313,"received":204}
//
// "recv" is what the backend read from the peer, "send" what it wrote.
// XPC values keep their wire type: strings, booleans, dictionaries (in wire
// order) and arrays are plain JSON; other types are tagged objects such as
// {"int64":"5"}, {"uint64":"7"}, {"uuid":"…"}, {"data":"base64"}.

// Defaults of WireLogConfig.
const (
	DefaultWireLogMaxSize = 64 << 20
	DefaultWireLogBackups = 3
)

// WireLogConfig configures OpenWireLog.
type WireLogConfig struct {
	// Path is the log file; it is appended to.
	Path string
	// MaxSize is the size at which the file is rotated (renamed to
	// Path.1, older ones shifted to Path.2 …); 0 means
	// DefaultWireLogMaxSize.
	MaxSize int64
	// Backups is how many rotated files are kept; 0 means
	// DefaultWireLogBackups.
	Backups int
}

// WireLog writes JSON lines to a size-rotated file. It is safe for
// concurrent use; a write error is kept (Err) and logging stops, so a full
// disk never disturbs the connections being logged.
type WireLog struct {
	cfg   WireLogConfig
	nextC atomic.Uint64
	now   func() time.Time

	mu   sync.Mutex
	f    *os.File
	w    io.Writer // f, or a test writer
	size int64
	err  error
}

// OpenWireLog opens (creating, mode 0600) the log file.
func OpenWireLog(cfg WireLogConfig) (*WireLog, error) {
	if cfg.Path == "" {
		return nil, errors.New("backend: wire log needs a file name")
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultWireLogMaxSize
	}
	if cfg.Backups <= 0 {
		cfg.Backups = DefaultWireLogBackups
	}
	l := &WireLog{cfg: cfg, now: time.Now}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

// newWireLogWriter logs to w without rotation (tests).
func newWireLogWriter(w io.Writer) *WireLog {
	return &WireLog{w: w, now: time.Now, cfg: WireLogConfig{MaxSize: 1 << 62}}
}

func (l *WireLog) open() error {
	f, err := os.OpenFile(l.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("backend: wire log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("backend: wire log: %w", err)
	}
	l.f, l.w, l.size = f, f, st.Size()
	return nil
}

// rotate shifts Path.N-1 → Path.N … Path → Path.1 and reopens Path.
// l.mu is held.
func (l *WireLog) rotate() error {
	if l.f == nil {
		return nil
	}
	l.f.Close()
	l.f = nil
	for i := l.cfg.Backups - 1; i >= 1; i-- {
		os.Rename(l.cfg.Path+"."+strconv.Itoa(i), l.cfg.Path+"."+strconv.Itoa(i+1))
	}
	if err := os.Rename(l.cfg.Path, l.cfg.Path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backend: wire log rotate: %w", err)
	}
	return l.open()
}

// Err returns the first write error, if any.
func (l *WireLog) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close closes the file. It is idempotent.
func (l *WireLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f, l.w = nil, nil
	if l.err == nil {
		l.err = net.ErrClosed
	}
	return err
}

// line writes one JSON object whose fields after time and conn are given
// pre-encoded (so the XPC body keeps its key order).
func (l *WireLog) line(conn uint64, fields func(b []byte) []byte) {
	b := make([]byte, 0, 256)
	b = append(b, `{"time":`...)
	b = strconv.AppendQuote(b, l.now().UTC().Format(time.RFC3339Nano))
	b = append(b, `,"conn":`...)
	b = strconv.AppendUint(b, conn, 10)
	b = fields(b)
	b = append(b, "}\n"...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || l.w == nil {
		return
	}
	if l.size+int64(len(b)) > l.cfg.MaxSize && l.size > 0 {
		if err := l.rotate(); err != nil {
			l.err = err
			return
		}
	}
	n, err := l.w.Write(b)
	l.size += int64(n)
	if err != nil {
		l.err = err
	}
}

// appendKey appends `,"key":`.
func appendKey(b []byte, key string) []byte {
	b = append(b, ',')
	b = appendJSONString(b, key)
	return append(b, ':')
}

func appendJSONString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil { // invalid UTF-8 is replaced by Marshal, so this is unreachable
		return append(b, `""`...)
	}
	return append(b, q...)
}

// Tap wraps c so that its traffic is logged under name. The returned conn
// keeps CloseWrite when c has it. A nil WireLog returns c unchanged.
func (l *WireLog) Tap(c net.Conn, name string) net.Conn {
	if l == nil {
		return c
	}
	t := &tapConn{Conn: c, log: l, id: l.nextC.Add(1)}
	t.recv = newH2Parser(l, t.id, "recv")
	t.send = newH2Parser(l, t.id, "send")
	local, remote := addrString(c.LocalAddr()), addrString(c.RemoteAddr())
	l.line(t.id, func(b []byte) []byte {
		b = appendKey(b, "name")
		b = appendJSONString(b, name)
		b = append(b, `,"event":"open","local":`...)
		b = appendJSONString(b, local)
		b = append(b, `,"remote":`...)
		return appendJSONString(b, remote)
	})
	return t
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// tapConn feeds what passes through it to one parser per direction. The
// parsers see the bytes after the call returned, so a stalled log never
// reorders traffic; each direction is used by one goroutine at a time (the
// net.Conn contract the xpc package and the relays keep).
type tapConn struct {
	net.Conn
	log        *WireLog
	id         uint64
	recv, send *h2Parser
	closeOnce  sync.Once
}

func (t *tapConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		t.recv.feed(p[:n])
	}
	return n, err
}

func (t *tapConn) Write(p []byte) (int, error) {
	n, err := t.Conn.Write(p)
	if n > 0 {
		t.send.feed(p[:n])
	}
	return n, err
}

// CloseWrite half-closes the underlying conn when it can.
func (t *tapConn) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return t.Conn.Close()
}

func (t *tapConn) Close() error {
	err := t.Conn.Close()
	t.closeOnce.Do(func() {
		sent, recv := t.send.total.Load(), t.recv.total.Load()
		t.log.line(t.id, func(b []byte) []byte {
			b = append(b, `,"event":"close","sent":`...)
			b = strconv.AppendInt(b, sent, 10)
			b = append(b, `,"received":`...)
			return strconv.AppendInt(b, recv, 10)
		})
	})
	return err
}
