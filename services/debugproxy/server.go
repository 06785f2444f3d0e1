package debugproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
)

// Target is the process table the simulated debugserver works on.
type Target interface {
	// Lookup describes a process; false if pid is not running.
	Lookup(pid int64) (ProcessInfo, bool)
	// Attach makes the debugger the process's tracer and stops it (a
	// process started stopped stays stopped).
	Attach(pid int64) error
	// Resume lets pid run until it stops or ends, or ctx ends (an
	// interrupt: the process is stopped again and Resume returns
	// Stop{Signal: SIGSTOP}).
	Resume(ctx context.Context, pid int64) (Stop, error)
	// Detach lets pid run on without the debugger.
	Detach(pid int64)
	// Kill ends pid.
	Kill(pid int64)
}

// ProcessInfo is what qProcessInfo reports.
type ProcessInfo struct {
	PID, ParentPID int64
	Name           string
	UID, GID       int64
}

// Stop is how a resumed process came to rest.
type Stop struct {
	// Exited: the process ended; Code is its exit status, or Signal the
	// signal that ended it (0 for none).
	Exited bool
	Code   int
	// Signal is the stop signal (Darwin numbering) of a process that is
	// stopped, or the one that ended it.
	Signal int
}

// Darwin signal numbers the server reports.
const (
	sigStop = 17
	sigKill = 9
)

// Server is the simulated debugserver: the subset of the remote protocol
// in debugproxy.md §3 (what lldb and the reference clients send to attach,
// continue and kill), answered against a Target. All answers are the
// simulator's choices.
type Server struct {
	Target Target
	Logger *slog.Logger
}

// session is one debugger connection.
type session struct {
	s        *Server
	c        *Conn
	log      *slog.Logger
	pkts     <-chan Packet // from the one reader goroutine; closed when the debugger goes
	attached int64         // 0: none
	exited   bool
}

// Serve speaks the protocol on conn until the debugger leaves, kills the
// process, or ctx ends. A process still attached when the debugger goes is
// detached (it runs on).
func (s *Server) Serve(ctx context.Context, conn net.Conn) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	c := NewConn(conn)
	pkts := make(chan Packet)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(pkts)
		for {
			p, err := c.Read()
			if err != nil {
				log.Debug("debugproxy: debugger gone", "err", err)
				return
			}
			select {
			case pkts <- p:
			case <-ctx.Done():
				return
			}
		}
	})
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	ss := &session{s: s, c: c, log: log, pkts: pkts}
	defer func() {
		if ss.attached != 0 && !ss.exited {
			s.Target.Detach(ss.attached)
		}
		cancel()
		stop()
		conn.Close()
		wg.Wait()
	}()
	for {
		var p Packet
		var ok bool
		select {
		case p, ok = <-pkts:
		case <-ctx.Done():
		}
		if !ok {
			return
		}
		if p.Interrupt {
			continue // nothing is running between packets
		}
		pkt := string(p.Data)
		if pkt == "QStartNoAckMode" {
			// Leave ack mode before the OK: the debugger sends nothing
			// until it has it, and acknowledges nothing after.
			c.NoAck()
		}
		reply, done := ss.handle(ctx, pkt)
		if err := c.Write([]byte(reply)); err != nil {
			return
		}
		if done {
			return
		}
	}
}

func hexPID(pid int64) string { return strconv.FormatInt(pid, 16) }

func (ss *session) stopReply() string {
	return fmt.Sprintf("T%02xthread:%s;", sigStop, hexPID(ss.attached))
}

// handle answers one packet; done ends the session after the reply.
func (ss *session) handle(ctx context.Context, pkt string) (reply string, done bool) {
	t := ss.s.Target
	switch {
	case strings.HasPrefix(pkt, "qSupported"):
		return "PacketSize=20000;QStartNoAckMode+", false
	case pkt == "QStartNoAckMode":
		return "OK", false
	case pkt == "qHostInfo":
		return "cputype:16777228;cpusubtype:2;ostype:ios;vendor:apple;endian:little;ptrsize:8;", false
	case pkt == "qProcessInfo":
		if ss.attached == 0 || ss.exited {
			return "E01", false
		}
		info, ok := t.Lookup(ss.attached)
		if !ok {
			return "E01", false
		}
		return fmt.Sprintf("pid:%s;parent-pid:%s;real-uid:%x;real-gid:%x;effective-uid:%x;effective-gid:%x;cputype:100000c;cpusubtype:2;ptrsize:8;ostype:ios;vendor:apple;endian:little;",
			hexPID(info.PID), hexPID(info.ParentPID), info.UID, info.GID, info.UID, info.GID), false
	case strings.HasPrefix(pkt, "vAttach;"):
		pid, err := strconv.ParseInt(pkt[len("vAttach;"):], 16, 64)
		if err != nil || pid <= 0 || ss.attached != 0 {
			return "E01", false
		}
		if _, ok := t.Lookup(pid); !ok {
			return "E01", false
		}
		if err := t.Attach(pid); err != nil {
			ss.log.Debug("debugproxy: attach", "pid", pid, "err", err)
			return "E01", false
		}
		ss.attached = pid
		return ss.stopReply(), false
	case pkt == "?":
		if ss.attached == 0 {
			return "E01", false
		}
		return ss.stopReply(), false
	case pkt == "c" || strings.HasPrefix(pkt, "vCont;c") || strings.HasPrefix(pkt, "C"):
		if ss.attached == 0 || ss.exited {
			return "E01", false
		}
		return ss.resume(ctx), false
	case pkt == "qfThreadInfo":
		if ss.attached == 0 || ss.exited {
			// An error, not an empty list: lldb takes an empty list
			// (or no answer) from a stub without processes for "pid 1".
			return "E01", false
		}
		return "m" + hexPID(ss.attached), false
	case pkt == "qsThreadInfo":
		return "l", false
	case pkt == "qC":
		if ss.attached == 0 || ss.exited {
			return "E01", false
		}
		return "QC" + hexPID(ss.attached), false
	case strings.HasPrefix(pkt, "Hg") || strings.HasPrefix(pkt, "Hc"):
		return "OK", false
	case pkt == "vCont?":
		return "vCont;c;C;s;S", false
	case pkt == "k":
		if ss.attached != 0 && !ss.exited {
			t.Kill(ss.attached)
			ss.exited = true
		}
		return fmt.Sprintf("X%02x", sigKill), true
	case pkt == "D" || strings.HasPrefix(pkt, "D;"):
		if ss.attached != 0 && !ss.exited {
			t.Detach(ss.attached)
		}
		ss.attached = 0
		return "OK", true
	}
	ss.log.Debug("debugproxy: unsupported packet", "packet", pkt)
	return "", false
}

// resume runs the attached process until it stops or ends; an interrupt
// from the debugger (or its leaving) stops it. A process that ends is
// reported as exited with status 0 (W00), as the simulator's subset has it.
func (ss *session) resume(ctx context.Context) string {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		st  Stop
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := ss.s.Target.Resume(rctx, ss.attached)
		done <- result{st, err}
	}()
	var r result
wait:
	for {
		select {
		case r = <-done:
			break wait
		case p, ok := <-ss.pkts:
			if !ok || p.Interrupt {
				cancel()
				ss.pkts = pktsAfter(ok, ss.pkts)
			}
			// Any other packet while running is dropped: no reply is due
			// before the stop reply.
		}
	}
	if r.err != nil && !errors.Is(r.err, context.Canceled) {
		ss.log.Debug("debugproxy: resume", "pid", ss.attached, "err", r.err)
	}
	if r.st.Exited {
		ss.exited = true
		return "W00"
	}
	return ss.stopReply()
}

// pktsAfter keeps a closed packet channel from being selected again.
func pktsAfter(open bool, c <-chan Packet) <-chan Packet {
	if open {
		return c
	}
	return nil
}
