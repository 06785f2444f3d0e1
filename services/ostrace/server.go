package ostrace

import (
	"context"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/reach"
)

// Feed is where the device role gets the records of one activity stream.
type Feed interface {
	// Next blocks until there are records and returns them; an error
	// (ctx ended, the device is going away) ends the stream.
	Next(ctx context.Context) ([]Record, error)
}

// Device is the state the device role serves.
type Device interface {
	// Processes lists the running processes for PidList.
	Processes() []Process
	// Activity starts a feed of the device's log from now on. The server
	// applies req's pid and level choices itself (Allows); the feed may
	// use them to send less.
	Activity(ctx context.Context, req ActivityRequest) (Feed, error)
	// Archive writes the log archive (a tar) to w.
	Archive(ctx context.Context, w io.Writer, req ArchiveRequest) error
}

// Server is the device role of os_trace_relay.
type Server struct {
	Device Device
	// WriteTimeout drops a host that stops reading; 0 means 30 s.
	WriteTimeout time.Duration
}

// ArchiveChunk is the largest chunk of a CreateArchive stream the device
// role sends (SIM).
const ArchiveChunk = 1 << 20

// Allows reports whether a record passes req as the simulator reads it
// (ostrace.md §4, SIM): log messages only when MessageFilter has their bit,
// the requested pid, and Info and Debug records only when StreamFlags asks
// for them (go-ios found 0x20 needed on a device; 0x100 is accepted too).
func (req ActivityRequest) Allows(r *Record) bool {
	if req.MessageFilter&FilterLogMessage == 0 {
		return false
	}
	if req.PID >= 0 && uint32(req.PID) != r.PID {
		return false
	}
	if (r.Level == LevelInfo || r.Level == LevelDebug) && req.StreamFlags&(FlagDebug|FlagInfo) == 0 {
		return false
	}
	return true
}

// Serve answers requests on conn (positioned after RSDCheckin or
// StartService) until the host hangs up or ctx ends. PidList may be
// repeated; StartActivity and CreateArchive take the connection over.
// Unknown requests get {Status: RequestFailed, Error: UnknownRequest}
// (SIM).
func (s *Server) Serve(ctx context.Context, conn net.Conn) error {
	pc := lockdown.NewPlistConn(conn, 64<<10)
	for {
		req, err := pc.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		name, _ := req["Request"].(string)
		switch name {
		case "PidList":
			payload := map[string]any{}
			for _, p := range s.Device.Processes() {
				payload[strconv.Itoa(p.PID)] = map[string]any{"ProcessName": p.Name}
			}
			if err := s.reply(ctx, conn, map[string]any{"Payload": payload, "Status": "RequestSuccessful"}); err != nil {
				return err
			}
		case "StartActivity":
			return s.activity(ctx, conn, ActivityRequest{
				PID:           intValue(req, "Pid", AllProcesses),
				MessageFilter: intValue(req, "MessageFilter", FilterAll),
				StreamFlags:   intValue(req, "StreamFlags", 0),
			})
		case "CreateArchive":
			ar := ArchiveRequest{SizeLimit: int64(intValue(req, "SizeLimit", 0)), AgeLimit: int64(intValue(req, "AgeLimit", 0))}
			if t := intValue(req, "StartTime", 0); t > 0 {
				ar.StartTime = time.Unix(int64(t), 0)
			}
			return s.archive(ctx, conn, ar)
		default:
			if err := s.reply(ctx, conn, map[string]any{"Status": "RequestFailed", "Error": "UnknownRequest"}); err != nil {
				return err
			}
		}
	}
}

func intValue(m lockdown.Message, key string, def int) int {
	switch v := m[key].(type) {
	case uint64:
		if v <= 1<<53 {
			return int(v)
		}
	case int64:
		return int(v)
	}
	return def
}

func (s *Server) timeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return 30 * time.Second
}

func (s *Server) write(ctx context.Context, conn net.Conn, b []byte) error {
	wctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	return deadline.Do(wctx, conn, func() error {
		_, err := conn.Write(b)
		return err
	})
}

func (s *Server) reply(ctx context.Context, conn net.Conn, v any) error {
	b, err := appendReply(nil, v)
	if err != nil {
		return err
	}
	return s.write(ctx, conn, b)
}

// activity streams records until the host goes or ctx ends.
func (s *Server) activity(ctx context.Context, conn net.Conn, req ActivityRequest) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feed, err := s.Device.Activity(ctx, req)
	if err != nil {
		_ = s.reply(ctx, conn, map[string]any{"Status": "RequestFailed", "Error": err.Error()})
		return err
	}
	if err := s.reply(ctx, conn, map[string]any{"Status": "RequestSuccessful"}); err != nil {
		return err
	}
	// Hosts send nothing more; a read returning means they hung up.
	ctx, stop := reach.WatchHangup(ctx, conn)
	defer stop()
	var buf []byte
	for {
		recs, err := feed.Next(ctx)
		if err != nil {
			return err
		}
		buf = buf[:0]
		for i := range recs {
			if req.Allows(&recs[i]) {
				buf = AppendRecordFrame(buf, &recs[i])
			}
		}
		if len(buf) == 0 {
			continue
		}
		if err := s.write(ctx, conn, buf); err != nil {
			return err
		}
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
}

// chunkWriter sends each write as archive chunks.
type chunkWriter struct {
	s    *Server
	ctx  context.Context
	conn net.Conn
	buf  []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		c := p[:min(len(p), ArchiveChunk)]
		p = p[len(c):]
		w.buf = appendFrame(w.buf[:0], markerArchive, c)
		if err := w.s.write(w.ctx, w.conn, w.buf); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// archive sends the ok reply, the archive in chunks, and closes (by
// returning: the caller closes conn).
func (s *Server) archive(ctx context.Context, conn net.Conn, req ArchiveRequest) error {
	if err := s.reply(ctx, conn, map[string]any{"Status": "RequestSuccessful"}); err != nil {
		return err
	}
	return s.Device.Archive(ctx, &chunkWriter{s: s, ctx: ctx, conn: conn}, req)
}
