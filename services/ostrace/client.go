package ostrace

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/lockdown"
)

// Process is one entry of PidList.
type Process struct {
	PID  int    `json:"pid"`
	Name string `json:"name"`
}

// Stream flags of StartActivity (ostrace.md §2.1).
const (
	FlagProcessOnly   = 0x1
	FlagSkipDecode    = 0x2
	FlagPayload       = 0x4
	FlagHistorical    = 0x8
	FlagCallStack     = 0x10
	FlagDebug         = 0x20 // Info and Debug records too
	FlagNoSensitive   = 0x80
	FlagInfo          = 0x100
	FlagPromiscuous   = 0x200
	DefaultStreamFlag = FlagPayload | FlagHistorical | FlagCallStack | FlagDebug // 0x3C, what pymobiledevice3, idevice and appium send
)

// Message filter bits of StartActivity.
const (
	FilterActivityCreate     = 0x1
	FilterActivityTransition = 0x2
	FilterLogMessage         = 0x4
	FilterSignpost           = 0x8
	FilterAll                = 0xFFFF
)

// ActivityRequest is what StartActivity asks for.
type ActivityRequest struct {
	// PID selects one process; -1 (AllProcesses) is every process.
	PID           int
	MessageFilter int
	StreamFlags   int
}

// AllProcesses is the PID of a request for every process.
const AllProcesses = -1

// DefaultActivity asks for every process's log messages at every level.
var DefaultActivity = ActivityRequest{PID: AllProcesses, MessageFilter: FilterAll, StreamFlags: DefaultStreamFlag}

// ArchiveRequest is what CreateArchive asks for; zero fields are left out
// (the device's defaults).
type ArchiveRequest struct {
	SizeLimit int64     // bytes
	AgeLimit  int64     // days
	StartTime time.Time // only entries after this
}

// RequestError is a request the device refused.
type RequestError struct {
	Request string
	Reply   map[string]any
}

func (e *RequestError) Error() string {
	msg := "the device refused it"
	if s, ok := e.Reply["Error"].(string); ok {
		msg += ": " + s
	} else if s, ok := e.Reply["Status"].(string); ok {
		msg += " with status " + strconv.Quote(s)
	}
	return fmt.Sprintf("ostrace: %s: %s", e.Request, msg)
}

// Client speaks os_trace_relay on one connection to the service,
// positioned at its first byte (services/reach opens it). Each request
// needs its own connection once it has taken it over: StartActivity turns
// it into a record stream, CreateArchive into the archive's bytes. PidList
// may be repeated. A Client is for one goroutine; Close may be called from
// any.
type Client struct {
	conn net.Conn
	pc   *lockdown.PlistConn
	br   *bufio.Reader
	buf  []byte
}

// NewClient wraps conn.
func NewClient(conn net.Conn) *Client {
	return &Client{conn: conn, pc: lockdown.NewPlistConn(conn, 0), br: bufio.NewReaderSize(conn, 64<<10)}
}

// Close closes the connection; a stream in flight returns.
func (c *Client) Close() error { return c.conn.Close() }

// request sends req and reads the reply frame.
func (c *Client) request(ctx context.Context, name string, req map[string]any) (map[string]any, error) {
	req["Request"] = name
	if err := c.pc.Send(ctx, req); err != nil {
		return nil, fmt.Errorf("ostrace: %s: send: %w", name, err)
	}
	var rep map[string]any
	err := deadline.Do(ctx, c.conn, func() error {
		m, p, err := readFrame(c.br, c.buf)
		if err != nil {
			return err
		}
		if m != markerReply {
			return fmt.Errorf("%w: reply frame with marker %#02x", ErrFrame, m)
		}
		rep, err = parseReply(p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ostrace: %s: read reply: %w", name, err)
	}
	if e, ok := rep["Error"]; ok && e != nil {
		return nil, &RequestError{Request: name, Reply: rep}
	}
	if s, ok := rep["Status"].(string); ok && s != "RequestSuccessful" {
		return nil, &RequestError{Request: name, Reply: rep}
	}
	return rep, nil
}

// PidList lists the device's processes by pid and name, sorted by pid. It
// needs no developer disk image, unlike CoreDevice's listprocesses.
func (c *Client) PidList(ctx context.Context) ([]Process, error) {
	rep, err := c.request(ctx, "PidList", map[string]any{})
	if err != nil {
		return nil, err
	}
	payload, ok := rep["Payload"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: PidList reply without a Payload dictionary", ErrFrame)
	}
	out := make([]Process, 0, len(payload))
	for k, v := range payload {
		pid, err := strconv.Atoi(k)
		if err != nil || pid < 0 {
			return nil, fmt.Errorf("%w: PidList key %q is not a pid", ErrFrame, k)
		}
		p := Process{PID: pid}
		if d, ok := v.(map[string]any); ok {
			p.Name, _ = d["ProcessName"].(string)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Process) int { return a.PID - b.PID })
	return out, nil
}

// StartActivity asks for the live log; Next or Run then read its records.
func (c *Client) StartActivity(ctx context.Context, req ActivityRequest) error {
	_, err := c.request(ctx, "StartActivity", map[string]any{
		"Pid": req.PID, "MessageFilter": req.MessageFilter, "StreamFlags": req.StreamFlags,
	})
	return err
}

// ErrClosed means the device ended the activity stream, which it does not
// do by itself.
var ErrClosed = errors.New("ostrace: the device closed the activity stream")

// Run reads records after StartActivity until ctx ends, fn returns an
// error, or the stream ends. r is reused for the next record; fn copies
// what it keeps.
func (c *Client) Run(ctx context.Context, fn func(r *Record) error) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	stop := deadline.Interrupt(ctx, c.conn.SetReadDeadline)
	defer stop()
	for {
		r, err := c.next()
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
}

// Next reads one record; ctx bounds the wait.
func (c *Client) Next(ctx context.Context) (*Record, error) {
	var r Record
	err := deadline.Do(ctx, c.conn, func() error {
		var err error
		r, err = c.next()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Buffered reports whether received records wait to be read.
func (c *Client) Buffered() bool { return c.br.Buffered() > 0 }

func (c *Client) next() (Record, error) {
	m, p, err := readFrame(c.br, c.buf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Record{}, ErrClosed
		}
		return Record{}, err
	}
	c.buf = p[:0]
	if m != markerRecord {
		return Record{}, fmt.Errorf("%w: marker %#02x in the activity stream", ErrFrame, m)
	}
	return ParseRecord(p)
}

// CreateArchive asks for the device's log archive (a tar of its log store,
// which macOS's log tool opens as a .logarchive once unpacked) and copies it
// to w, calling progress (if set) with the byte count after every chunk. It
// returns the archive's size when the device has closed the stream. ctx
// bounds the whole transfer.
func (c *Client) CreateArchive(ctx context.Context, w io.Writer, req ArchiveRequest, progress func(n int64)) (int64, error) {
	m := map[string]any{}
	if req.SizeLimit > 0 {
		m["SizeLimit"] = req.SizeLimit
	}
	if req.AgeLimit > 0 {
		m["AgeLimit"] = req.AgeLimit
	}
	if !req.StartTime.IsZero() {
		m["StartTime"] = req.StartTime.Unix()
	}
	if _, err := c.request(ctx, "CreateArchive", m); err != nil {
		return 0, err
	}
	var n int64
	err := deadline.Do(ctx, c.conn, func() error {
		for {
			mk, p, err := readFrame(c.br, c.buf)
			if errors.Is(err, io.EOF) {
				return nil // the device closes after the last chunk
			}
			if err != nil {
				return err
			}
			c.buf = p[:0]
			if mk != markerArchive {
				return fmt.Errorf("%w: marker %#02x in the archive", ErrFrame, mk)
			}
			if _, err := w.Write(p); err != nil {
				return fmt.Errorf("writing the archive: %w", err)
			}
			n += int64(len(p))
			if progress != nil {
				progress(n)
			}
		}
	})
	if err != nil {
		return n, fmt.Errorf("ostrace: CreateArchive after %d bytes: %w", n, err)
	}
	return n, nil
}
