package xpc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// connState is everything the owner goroutine (run) owns. No other
// goroutine touches it, except step, which is atomic.
type connState struct {
	c      *Conn
	client bool

	wbuf bytes.Buffer  // frames queued for the next write batch
	wfr  *http2.Framer // encodes frames into wbuf

	streams     map[uint32]*stream
	connSendWin int64 // peer's connection window for our DATA
	peerIWS     int64 // peer's SETTINGS_INITIAL_WINDOW_SIZE
	connRecvAck int64 // received bytes not yet returned by WINDOW_UPDATE
	recvStep    int64 // replenish once this many bytes are pending

	writing  bool
	inflight []*sendOp // fully framed, completed when the batch is written

	readerWaiting bool
	queued        []received
	queuedBytes   int
	waiters       map[uint64]chan Message

	gotHeader, gotPing, gotInit bool
	setupComplete               bool
	step                        atomic.Pointer[string]
	lastPeerStream              uint32
}

type stream struct {
	id         uint32
	opened     bool // the client opened it (HEADERS)
	headersOut bool // we sent HEADERS on it
	discard    bool // a stream we do not serve: its DATA is dropped
	sendWin    int64
	recvAck    int64
	buf        []byte
	off        int
	ops        []*sendOp
}

func newConnState(c *Conn) *connState {
	st := &connState{
		c:           c,
		client:      c.client,
		streams:     map[uint32]*stream{},
		connSendWin: 65535,
		peerIWS:     65535,
		recvStep:    int64(c.cfg.WindowSize / 4),
		waiters:     map[uint64]chan Message{},
	}
	st.wfr = http2.NewFramer(&st.wbuf, nil)
	st.setStep("waiting for the peer's set-up")
	return st
}

func (st *connState) setStep(s string) { st.step.Store(&s) }

func (st *connState) setupStepSnapshot() string { return *st.step.Load() }

func (st *connState) stream(id uint32) *stream {
	s := st.streams[id]
	if s == nil {
		s = &stream{id: id, sendWin: st.peerIWS}
		st.streams[id] = s
	}
	return s
}

// connErr wraps err with the connection name and what was being done.
func (st *connState) connErr(op string, err error) error {
	return &ConnError{Conn: st.c.cfg.Name, Op: op, Err: err}
}

// protoErr queues a GOAWAY for a peer's protocol violation and returns the
// error that ends the connection.
func (st *connState) protoErr(op string, code http2.ErrCode, msg string) error {
	_ = st.wfr.WriteGoAway(st.lastPeerStream, code, []byte(msg))
	return st.connErr(op, &ProtocolError{Code: code, Msg: msg})
}

// run is the owner goroutine: it alone touches connState.
func (c *Conn) run() {
	defer c.wg.Done()
	st := c.st
	batches := make(chan []byte, 1)
	c.wg.Add(1)
	go c.writeLoop(batches)
	st.begin()
	var err error
	for err == nil {
		st.flush(batches)
		st.maybeResumeReader()
		var deliver chan received
		var head received
		if len(st.queued) > 0 {
			deliver, head = c.deliverCh, st.queued[0]
		}
		select {
		case r := <-c.frames:
			err = st.handleRead(r)
		case op := <-c.sendCh:
			st.enqueue(op)
		case id := <-c.cancelWait:
			delete(st.waiters, id)
		case werr := <-c.writeDone:
			err = st.wrote(werr)
		case deliver <- head:
			st.queued[0] = received{}
			st.queued = st.queued[1:]
			st.queuedBytes -= head.n
		case <-c.closeCh:
			err = st.connErr("close", net.ErrClosed)
		}
	}
	var pe *ProtocolError
	if errors.As(err, &pe) {
		st.flushGoAway(batches)
	} else if st.writing {
		// The batch in flight may have reached the peer before it hung up
		// (a last reply, then the peer closes): its senders learn it went
		// out. Closing nc first bounds the wait on a peer that stopped
		// reading.
		_ = c.nc.Close()
		if werr := <-c.writeDone; werr == nil {
			for _, op := range st.inflight {
				op.done <- nil
			}
			clear(st.inflight)
			st.inflight = st.inflight[:0]
		}
		st.writing = false
	}
	c.err = err
	c.mu.Lock()
	c.leftover = st.queued
	c.mu.Unlock()
	c.cfg.Logger.Debug("xpc: connection ended", "conn", c.cfg.Name, "err", err)
	close(c.done)
	_ = c.nc.Close()
	for _, s := range st.streams {
		for _, op := range s.ops {
			op.done <- err
		}
	}
	for _, op := range st.inflight {
		op.done <- err
	}
}

// flushGoAway gives our GOAWAY a short chance to reach the peer.
func (st *connState) flushGoAway(batches chan<- []byte) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	if st.writing {
		select {
		case <-st.c.writeDone:
		case <-t.C:
			return
		}
	}
	if st.wbuf.Len() == 0 {
		return
	}
	batches <- bytes.Clone(st.wbuf.Bytes())
	select {
	case <-st.c.writeDone:
	case <-t.C:
	}
}

// begin queues what each role sends before reading anything (xpc.md §1.6,
// §1.7): the client its whole set-up, the server SETTINGS and WINDOW_UPDATE.
func (st *connState) begin() {
	iws := st.c.cfg.WindowSize
	if st.client {
		st.wbuf.WriteString(http2.ClientPreface)
	}
	_ = st.wfr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: iws},
	)
	if iws > 65535 {
		_ = st.wfr.WriteWindowUpdate(0, iws-65535)
	}
	if !st.client {
		st.setStep("waiting for the client preface and HEADERS on stream 1")
		return
	}
	// The canonical order of CoreDeviceService, pmd3 and appium: HEADERS(3)
	// before the stream-1 PING, which some daemons require (xpc.md §1.6).
	s1, s3 := st.stream(1), st.stream(3)
	s1.opened, s1.headersOut, s3.opened, s3.headersOut = true, true, true, true
	st.writeHeaders(1)
	st.writeRaw(s1, &Message{Flags: FlagsHeader, Body: NewDict()})
	st.writeHeaders(3)
	st.writeRaw(s1, &Message{Flags: FlagsPingMsg})
	st.writeRaw(s3, &Message{Flags: FlagsReplyOpen})
	st.setStep("waiting for the server's HEADER mirrors on streams 1 and 3")
}

func (st *connState) writeHeaders(id uint32) {
	_ = st.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true})
}

// writeRaw writes a small set-up message as one DATA frame right away, so it
// keeps its place among the HEADERS frames.
func (st *connState) writeRaw(s *stream, m *Message) {
	b, _ := m.AppendBinary(nil)
	_ = st.wfr.WriteData(s.id, false, b)
	s.sendWin -= int64(len(b))
	st.connSendWin -= int64(len(b))
}

// mirror answers a set-up message on s. It goes out right away, in the
// order the client's frames arrived and ahead of anything sent after set-up
// (the RSD Handshake must follow the INIT_HANDSHAKE mirror on the wire, as a
// device sends them, overview.md §5.3), unless s already has messages queued
// or the peer's windows are too small; then it queues behind them.
func (st *connState) mirror(s *stream, m *Message) {
	b, _ := m.AppendBinary(nil)
	if n := int64(len(b)); len(s.ops) == 0 && n <= maxFrameSend && n <= s.sendWin && n <= st.connSendWin {
		_ = st.wfr.WriteData(s.id, false, b)
		s.sendWin -= n
		st.connSendWin -= n
		return
	}
	s.ops = append(s.ops, &sendOp{stream: s.id, data: b, done: make(chan error, 1)})
}

func (st *connState) enqueue(op *sendOp) {
	s := st.streams[op.stream]
	if s == nil || !s.opened || s.discard {
		op.done <- st.connErr(fmt.Sprintf("send on stream %d", op.stream), errors.New("stream not open"))
		return
	}
	if op.replyTo != nil {
		st.waiters[op.replyID] = op.replyTo
	}
	if !s.headersOut {
		st.writeHeaders(s.id)
		s.headersOut = true
	}
	s.ops = append(s.ops, op)
}

// flush hands the writer everything that may be written now: queued control
// frames, window updates, then DATA within the peer's windows, at most
// maxFrameSend bytes per frame.
func (st *connState) flush(batches chan<- []byte) {
	if st.writing {
		return
	}
	st.writeWindowUpdates()
	ids := make([]uint32, 0, len(st.streams))
	for id := range st.streams {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for st.wbuf.Len() < maxBatch {
		progressed := false
		for _, id := range ids {
			s := st.streams[id]
			for len(s.ops) > 0 && s.ops[0].off == 0 && s.ops[0].ctx != nil && s.ops[0].ctx.Err() != nil {
				s.ops[0].done <- st.connErr(fmt.Sprintf("send on stream %d", id), s.ops[0].ctx.Err())
				s.ops = s.ops[1:]
			}
			if len(s.ops) == 0 {
				continue
			}
			op := s.ops[0]
			n := min(int64(len(op.data)-op.off), maxFrameSend, s.sendWin, st.connSendWin)
			if n <= 0 {
				continue
			}
			_ = st.wfr.WriteData(id, false, op.data[op.off:op.off+int(n)])
			op.off += int(n)
			s.sendWin -= n
			st.connSendWin -= n
			if op.off == len(op.data) {
				s.ops[0] = nil
				s.ops = s.ops[1:]
				st.inflight = append(st.inflight, op)
			}
			progressed = true
		}
		if !progressed {
			break
		}
	}
	if st.wbuf.Len() == 0 {
		return
	}
	st.writing = true
	batches <- bytes.Clone(st.wbuf.Bytes())
	st.wbuf.Reset()
}

// writeWindowUpdates returns received bytes to the peer once a quarter of
// the window is pending, at stream and connection level, so messages of many
// MiB stream without stalling.
func (st *connState) writeWindowUpdates() {
	if st.connRecvAck >= st.recvStep {
		_ = st.wfr.WriteWindowUpdate(0, uint32(st.connRecvAck))
		st.connRecvAck = 0
	}
	for id, s := range st.streams {
		if s.recvAck >= st.recvStep {
			_ = st.wfr.WriteWindowUpdate(id, uint32(s.recvAck))
			s.recvAck = 0
		}
	}
}

func (st *connState) wrote(err error) error {
	st.writing = false
	if err != nil {
		return st.connErr("write", err)
	}
	for _, op := range st.inflight {
		op.done <- nil
	}
	clear(st.inflight)
	st.inflight = st.inflight[:0]
	return nil
}

// maybeResumeReader lets the reader fetch the next frame unless we are
// backed up: too many control frames the peer has not read, or too many
// received messages nobody has taken.
func (st *connState) maybeResumeReader() {
	if !st.readerWaiting || st.wbuf.Len() >= maxControlBacklog {
		return
	}
	if len(st.queued) > 0 && st.queuedBytes >= st.c.cfg.MaxQueued {
		return
	}
	st.readerWaiting = false
	st.c.readMore <- struct{}{}
}

func (st *connState) handleRead(r readResult) error {
	if r.err != nil {
		var ce http2.ConnectionError
		if errors.As(r.err, &ce) {
			return st.protoErr(r.desc, http2.ErrCode(ce), r.err.Error())
		}
		return st.connErr(r.desc, r.err)
	}
	st.readerWaiting = true
	h := r.f.Header()
	if h.StreamID > st.lastPeerStream && h.StreamID%2 == 1 {
		st.lastPeerStream = h.StreamID
	}
	switch f := r.f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		err := f.ForeachSetting(func(s http2.Setting) error {
			if s.ID == http2.SettingInitialWindowSize && s.Val <= 1<<31-1 {
				delta := int64(s.Val) - st.peerIWS
				st.peerIWS = int64(s.Val)
				for _, s := range st.streams {
					s.sendWin += delta
				}
			}
			return nil
		})
		if err != nil {
			return st.connErr("SETTINGS frame", err)
		}
		_ = st.wfr.WriteSettingsAck()
	case *http2.WindowUpdateFrame:
		if h.StreamID == 0 {
			st.connSendWin += int64(f.Increment)
		} else if s := st.streams[h.StreamID]; s != nil {
			s.sendWin += int64(f.Increment)
		}
	case *http2.HeadersFrame:
		return st.onHeaders(h.StreamID)
	case *http2.DataFrame:
		return st.onData(f)
	case *http2.RSTStreamFrame:
		if s := st.streams[h.StreamID]; s != nil && !s.discard {
			return st.connErr(fmt.Sprintf("RST_STREAM frame on stream %d", h.StreamID),
				&PeerError{Frame: fmt.Sprintf("RST_STREAM on stream %d", h.StreamID), Code: f.ErrCode})
		}
	case *http2.GoAwayFrame:
		return st.connErr("GOAWAY frame", &PeerError{Frame: "GOAWAY", Code: f.ErrCode, Detail: string(f.DebugData())})
	case *http2.PingFrame:
		if !f.IsAck() {
			_ = st.wfr.WritePing(true, f.Data)
		}
	}
	return nil
}

func (st *connState) onHeaders(id uint32) error {
	op := fmt.Sprintf("HEADERS frame on stream %d", id)
	if st.client {
		// The device echoes our HEADERS; clients ignore them (xpc.md §1.5).
		// Device-opened even streams carry file downloads (xpc.md §4), which we do
		// not serve yet: their data is dropped.
		if st.streams[id] == nil {
			st.stream(id).discard = true
		}
		return nil
	}
	if id%2 == 0 {
		// What the device answers (xpc.md §1.2).
		return st.protoErr(op, http2.ErrCodeProtocol, "request HEADERS: invalid stream_id")
	}
	s := st.stream(id)
	if s.opened {
		return nil
	}
	s.opened = true
	switch id {
	case 1:
		st.setStep("waiting for the HEADER message on stream 1")
	case 3:
	default:
		// Host file-transfer streams (xpc.md §4) are not served yet; refuse
		// them so the peer sees a clear answer rather than silence.
		s.discard = true
		_ = st.wfr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	st.writeHeaders(id)
	s.headersOut = true
	return nil
}

func (st *connState) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length) // flow-controlled bytes include padding
	st.connRecvAck += n
	s := st.streams[id]
	if s == nil || !s.opened && !s.discard {
		if st.client {
			st.stream(id).discard = true
			return nil
		}
		return st.protoErr(fmt.Sprintf("DATA frame on stream %d", id), http2.ErrCodeProtocol, "DATA on a stream the client did not open")
	}
	// We replenish on receipt, not on consumption: reassembly is bounded by
	// the maximum message size and delivery by MaxQueued, which pauses
	// reading. Peers that overrun our window (pmd3 ignores it) are tolerated.
	s.recvAck += n
	if s.discard {
		return nil
	}
	s.buf = append(s.buf, f.Data()...)
	for {
		avail := s.buf[s.off:]
		if len(avail) < HeaderLen {
			break
		}
		op := fmt.Sprintf("message on stream %d at stream offset %d", id, s.off)
		h, err := ParseHeader(avail)
		if err != nil {
			return st.protoErr(op, http2.ErrCodeProtocol, err.Error())
		}
		if h.BodyLen > uint64(st.c.cfg.Decode.maxBody()) {
			return st.protoErr(op, http2.ErrCodeProtocol, fmt.Sprintf("%v: body length %d exceeds limit %d", ErrTooLarge, h.BodyLen, st.c.cfg.Decode.maxBody()))
		}
		total := HeaderLen + int(h.BodyLen)
		if len(avail) < total {
			break
		}
		m, err := st.c.cfg.Decode.Decode(avail[:total])
		if err != nil {
			return st.protoErr(op, http2.ErrCodeProtocol, err.Error())
		}
		s.off += total
		st.onMessage(s, m, total)
	}
	switch {
	case s.off == len(s.buf):
		if cap(s.buf) > 1<<20 {
			s.buf = nil
		} else {
			s.buf = s.buf[:0]
		}
		s.off = 0
	case s.off > len(s.buf)/2:
		s.buf = s.buf[:copy(s.buf, s.buf[s.off:])]
		s.off = 0
	}
	return nil
}

// onMessage consumes the set-up messages (the first HEADER and PING on
// stream 1, the first INIT_HANDSHAKE on stream 3), mirroring them in the
// server role, hands replies to their Request and queues the rest.
func (st *connState) onMessage(s *stream, m Message, n int) {
	log := st.c.cfg.Logger
	switch {
	case s.id == 1 && !st.gotHeader && m.Flags.Type() == TypeHeader && !m.Flags.Has(FlagWantsReply):
		st.gotHeader = true
		log.Debug("xpc: set-up HEADER", "conn", st.c.cfg.Name, "stream", 1)
		if !st.client {
			body := st.c.cfg.HeaderReply
			if body == nil {
				body = NewDict()
			}
			st.mirror(s, &Message{Flags: FlagsHeader, Body: body})
		}
	case s.id == 1 && !st.gotPing && m.Flags.Type() == TypePing:
		st.gotPing = true
		log.Debug("xpc: set-up PING", "conn", st.c.cfg.Name)
		if !st.client {
			st.mirror(s, &Message{Flags: FlagsPingMsg})
		}
	case s.id == 3 && !st.gotInit && m.Flags.Has(FlagInitHandshake):
		st.gotInit = true
		log.Debug("xpc: set-up INIT_HANDSHAKE", "conn", st.c.cfg.Name, "stream", 3)
		if !st.client {
			st.mirror(s, &Message{Flags: FlagsReplyOpen})
		}
	default:
		if w, ok := st.waiters[m.ID]; ok && s.id == 3 {
			delete(st.waiters, m.ID)
			w <- m
			return
		}
		st.queued = append(st.queued, received{ch: Channel(s.id), msg: m, n: n})
		st.queuedBytes += n
		return
	}
	st.checkSetup()
}

func (st *connState) checkSetup() {
	if st.setupComplete {
		return
	}
	var ready bool
	var missing []string
	if st.client {
		ready = st.gotHeader && st.gotInit
		if !st.gotHeader {
			missing = append(missing, "the HEADER mirror on stream 1")
		}
		if !st.gotInit {
			missing = append(missing, "the INIT_HANDSHAKE mirror on stream 3")
		}
	} else {
		ready = st.gotPing && st.gotInit
		if !st.gotPing {
			missing = append(missing, "PING on stream 1")
		}
		if !st.gotInit {
			missing = append(missing, "INIT_HANDSHAKE on stream 3")
		}
	}
	if ready {
		st.setupComplete = true
		st.setStep("done")
		close(st.c.setupDone)
		return
	}
	st.setStep(fmt.Sprintf("waiting for %v", missing))
}
