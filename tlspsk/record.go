package tlspsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Record content types (RFC 5246 §6.2.1).
const (
	recordTypeChangeCipherSpec uint8 = 20
	recordTypeAlert            uint8 = 21
	recordTypeHandshake        uint8 = 22
	recordTypeApplicationData  uint8 = 23
)

const (
	recordHeaderLen = 5
	// maxPlaintext is the largest TLSPlaintext.fragment (RFC 5246 §6.2.1).
	maxPlaintext = 1 << 14
	// maxCiphertext bounds TLSCiphertext.length (RFC 5246 §6.2.3).
	maxCiphertext = maxPlaintext + 2048
	// maxHandshake bounds one handshake message; ours are tiny and a
	// ClientHello with many extensions stays well below this.
	maxHandshake = 1 << 16
	// rawBufSize holds four full records, so one read syscall can bring in
	// several records of a bulk transfer (the peer's writes are batched
	// the same way, maxRecordsPerWrite).
	rawBufSize = 4 * (recordHeaderLen + maxCiphertext)
	// maxEmptyRecords and maxWarnings stop a peer from keeping us busy with
	// records that carry nothing (crypto/tls has the same guard).
	maxEmptyRecords = 100
	maxWarnings     = 5
)

// halfConn is one direction of the record layer: its own lock, cipher,
// sequence number and first permanent error (crypto/tls conn.go).
type halfConn struct {
	sync.Mutex
	err     error        // first permanent error; sticks
	cipher  recordCipher // nil until ChangeCipherSpec
	next    recordCipher // keys waiting for ChangeCipherSpec
	seq     uint64
	version uint16 // record version; 0 until negotiated
}

var errSeqOverflow = errors.New("tlspsk: record sequence number exhausted")

// setErr records err as the permanent error unless one is already there.
func (hc *halfConn) setErr(err error) error {
	if hc.err == nil {
		hc.err = err
	}
	return err
}

// changeCipherSpec installs the pending keys and restarts the sequence.
func (hc *halfConn) changeCipherSpec() bool {
	if hc.next == nil {
		return false
	}
	hc.cipher, hc.next, hc.seq = hc.next, nil, 0
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fill makes at least n unread bytes available in c.raw. Caller holds c.in
// and has consumed c.input (which aliases c.raw). A timeout leaves the
// buffer consistent, so the next call resumes where this one stopped.
func (c *Conn) fill(n int) error {
	if c.raw == nil {
		c.raw = make([]byte, rawBufSize)
	}
	if c.rawStart == c.rawEnd {
		c.rawStart, c.rawEnd = 0, 0
	}
	if c.rawEnd-c.rawStart >= n {
		return nil
	}
	if c.rawStart+n > len(c.raw) {
		c.rawEnd = copy(c.raw, c.raw[c.rawStart:c.rawEnd])
		c.rawStart = 0
	}
	for c.rawEnd-c.rawStart < n {
		m, err := c.conn.Read(c.raw[c.rawEnd:])
		c.rawEnd += m
		if c.rawEnd-c.rawStart >= n {
			return nil
		}
		if err == io.EOF {
			if c.rawEnd == c.rawStart {
				return errEOFNoCloseNotify
			}
			return errTruncatedRecord
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// recordBufferedLocked reports whether a whole record is waiting in c.raw,
// so that reading it needs no call on the conn. Caller holds c.in.
func (c *Conn) recordBufferedLocked() bool {
	avail := c.rawEnd - c.rawStart
	if avail < recordHeaderLen {
		return false
	}
	return avail >= recordHeaderLen+int(binary.BigEndian.Uint16(c.raw[c.rawStart+3:]))
}

var (
	errEOFNoCloseNotify = fmt.Errorf("tlspsk: connection closed without close_notify: %w", io.ErrUnexpectedEOF)
	errTruncatedRecord  = fmt.Errorf("tlspsk: connection closed inside a record: %w", io.ErrUnexpectedEOF)
)

// readRecord reads, checks and decrypts the next record and files it:
// application data into c.input (or straight into dst when dst can hold
// it, returning the length), handshake bytes onto c.hand, alerts and
// ChangeCipherSpec handled here. Caller holds c.in.
func (c *Conn) readRecord(dst []byte, expectCCS bool) (int, error) {
	if c.in.err != nil {
		return 0, c.in.err
	}
	if err := c.fill(recordHeaderLen); err != nil {
		return 0, c.readErr(err)
	}
	hdr := c.raw[c.rawStart : c.rawStart+recordHeaderLen]
	typ, vers, n := hdr[0], binary.BigEndian.Uint16(hdr[1:3]), int(binary.BigEndian.Uint16(hdr[3:5]))
	switch {
	case c.in.version == 0 && !c.isClient && hdr[0]&0x80 != 0 && hdr[2] == 1:
		return 0, c.fail(AlertProtocolVersion, errors.New("tlspsk: SSL 2.0 ClientHello refused"))
	case typ < recordTypeChangeCipherSpec || typ > recordTypeApplicationData:
		return 0, c.fail(AlertUnexpectedMessage, fmt.Errorf("tlspsk: unknown record type %d", typ))
	case vers>>8 != 3, c.in.version != 0 && vers != c.in.version && typ != recordTypeAlert:
		// A peer that fails before it learns the version (a client
		// rejecting our ServerHello) sends its alert with its initial
		// record version, so alerts are let through.
		return 0, c.fail(AlertProtocolVersion, fmt.Errorf("tlspsk: record version 0x%04x, want 0x%04x", vers, VersionTLS12))
	case n > maxCiphertext, c.in.cipher == nil && n > maxPlaintext:
		return 0, c.fail(AlertRecordOverflow, fmt.Errorf("tlspsk: record of %d bytes is too long", n))
	}
	if err := c.fill(recordHeaderLen + n); err != nil {
		return 0, c.readErr(err)
	}
	frag := c.raw[c.rawStart+recordHeaderLen : c.rawStart+recordHeaderLen+n]
	c.rawStart += recordHeaderLen + n

	data := frag
	direct := false
	if hc := &c.in; hc.cipher != nil {
		var out []byte
		if typ == recordTypeApplicationData && !expectCCS {
			if m := hc.cipher.openLen(n); m > 0 && m <= len(dst) {
				out, direct = dst, true
			}
		}
		var err error
		if data, err = hc.cipher.open(out, hc.seq, typ, frag); err != nil {
			return 0, c.fail(AlertBadRecordMAC, err)
		}
		if hc.seq++; hc.seq == 0 {
			return 0, c.fail(AlertInternalError, errSeqOverflow)
		}
	}
	if len(data) > maxPlaintext {
		return 0, c.fail(AlertRecordOverflow, fmt.Errorf("tlspsk: record plaintext of %d bytes is too long", len(data)))
	}
	if typ != recordTypeAlert {
		c.warnings = 0
	}
	if len(data) == 0 {
		if typ != recordTypeApplicationData {
			return 0, c.fail(AlertUnexpectedMessage, fmt.Errorf("tlspsk: empty record of type %d", typ))
		}
		if c.emptyRecords++; c.emptyRecords > maxEmptyRecords {
			return 0, c.fail(AlertUnexpectedMessage, errors.New("tlspsk: too many empty records"))
		}
	} else {
		c.emptyRecords = 0
	}

	if expectCCS && typ != recordTypeChangeCipherSpec && typ != recordTypeAlert {
		return 0, c.fail(AlertUnexpectedMessage, fmt.Errorf("tlspsk: record type %d where ChangeCipherSpec was due", typ))
	}
	switch typ {
	case recordTypeAlert:
		return 0, c.handleAlert(data)
	case recordTypeChangeCipherSpec:
		if !expectCCS {
			return 0, c.fail(AlertUnexpectedMessage, errors.New("tlspsk: unexpected ChangeCipherSpec"))
		}
		if len(data) != 1 || data[0] != 1 {
			return 0, c.fail(AlertDecodeError, errors.New("tlspsk: malformed ChangeCipherSpec"))
		}
		// A handshake message may not straddle a key change (RFC 5246 §7.1).
		if len(c.hand) != 0 || !c.in.changeCipherSpec() {
			return 0, c.fail(AlertUnexpectedMessage, errors.New("tlspsk: ChangeCipherSpec in the middle of a handshake message"))
		}
		return 0, nil
	case recordTypeHandshake:
		if len(c.hand)+len(data) > maxHandshake+4 {
			return 0, c.fail(AlertDecodeError, errors.New("tlspsk: handshake message too long"))
		}
		c.hand = append(c.hand, data...)
		if c.handshakeDone.Load() {
			return 0, c.handlePostHandshake()
		}
		return 0, nil
	default: // application data
		if !c.handshakeDone.Load() {
			return 0, c.fail(AlertUnexpectedMessage, errors.New("tlspsk: application data before the handshake completed"))
		}
		if direct {
			return len(data), nil
		}
		c.input = data
		return 0, nil
	}
}

// readErr files an error from the underlying conn: timeouts are returned
// as they are and do not stick; anything else ends the read side.
func (c *Conn) readErr(err error) error {
	if isTimeout(err) {
		return err
	}
	return c.in.setErr(err)
}

// handleAlert acts on a received alert. Caller holds c.in.
func (c *Conn) handleAlert(data []byte) error {
	if len(data) != 2 {
		return c.fail(AlertDecodeError, errors.New("tlspsk: malformed alert"))
	}
	level, desc := data[0], Alert(data[1])
	switch {
	case desc == AlertCloseNotify:
		return c.in.setErr(io.EOF)
	case level == alertLevelWarning:
		// no_renegotiation, user_canceled and the like: nothing to do.
		if c.warnings++; c.warnings > maxWarnings {
			return c.fail(AlertUnexpectedMessage, errors.New("tlspsk: too many warning alerts"))
		}
		return nil
	default:
		return c.in.setErr(&AlertError{Alert: desc, Remote: true})
	}
}

// handshakeBodyLen reads the 24-bit length of the message starting at b[0].
func handshakeBodyLen(b []byte) int {
	return int(b[1])<<16 | int(b[2])<<8 | int(b[3])
}

// nextHandshake cuts the next complete message off c.hand, or returns nil.
func (c *Conn) nextHandshake() []byte {
	if len(c.hand) < 4 {
		return nil
	}
	n := 4 + handshakeBodyLen(c.hand)
	if len(c.hand) < n {
		return nil
	}
	msg := append([]byte(nil), c.hand[:n]...)
	c.hand = c.hand[:copy(c.hand, c.hand[n:])]
	return msg
}

// handlePostHandshake refuses renegotiation: a HelloRequest (to a client)
// or ClientHello (to a server) after the handshake gets a no_renegotiation
// warning and is otherwise ignored (RFC 5246 §7.2.2); any other message is
// unexpected. Caller holds c.in.
func (c *Conn) handlePostHandshake() error {
	for {
		if len(c.hand) >= 4 && handshakeBodyLen(c.hand) > maxHandshake {
			return c.fail(AlertDecodeError, errors.New("tlspsk: handshake message too long"))
		}
		msg := c.nextHandshake()
		if msg == nil {
			return nil
		}
		want := typeClientHello
		if c.isClient {
			want = typeHelloRequest
		}
		if msg[0] != want {
			return c.fail(AlertUnexpectedMessage, fmt.Errorf("tlspsk: unexpected handshake message type %d after the handshake", msg[0]))
		}
		if m := newMessage(want); !m.unmarshal(msg) {
			return c.fail(AlertDecodeError, fmt.Errorf("tlspsk: malformed handshake message type %d", msg[0]))
		}
		c.out.Lock()
		err := c.sendAlertLocked(AlertNoRenegotiation)
		c.out.Unlock()
		if err != nil {
			return c.in.setErr(err)
		}
	}
}

// fail sends a fatal alert (best effort) and makes the failure the sticky
// error of both directions. Caller holds c.in.
func (c *Conn) fail(a Alert, err error) error {
	e := localAlert(a, err)
	c.out.Lock()
	c.sendAlertLocked(a)
	c.out.setErr(e)
	c.out.Unlock()
	return c.in.setErr(e)
}

// sealRecord appends one record of typ carrying payload (≤ maxPlaintext) to
// out. Caller holds c.out.
func (c *Conn) sealRecord(out []byte, typ uint8, payload []byte) ([]byte, error) {
	start := len(out)
	vers := c.out.version
	if vers == 0 {
		// The ClientHello record carries TLS 1.0, as crypto/tls and OpenSSL
		// do, for servers that choke on a newer record version.
		vers = versionTLS10
	}
	out = append(out, typ, byte(vers>>8), byte(vers), 0, 0)
	if hc := &c.out; hc.cipher == nil {
		out = append(out, payload...)
	} else {
		var err error
		if out, err = hc.cipher.seal(out, hc.seq, typ, payload, c.config.rand()); err != nil {
			return nil, err
		}
		if hc.seq++; hc.seq == 0 {
			return nil, errSeqOverflow
		}
	}
	binary.BigEndian.PutUint16(out[start+3:], uint16(len(out)-start-recordHeaderLen))
	return out, nil
}

// sendAlertLocked writes one alert record now. After a fatal alert, or once
// the write side has failed, nothing more is sent. Caller holds c.out.
func (c *Conn) sendAlertLocked(a Alert) error {
	if c.out.err != nil {
		return c.out.err
	}
	if c.closeNotifySent && a != AlertCloseNotify {
		return errShutdown // nothing may follow close_notify
	}
	if err := c.flushPendingLocked(); err != nil {
		return err
	}
	rec, err := c.sealRecord(c.outBuf[:0], recordTypeAlert, []byte{a.level(), byte(a)})
	if err != nil {
		return c.out.setErr(err)
	}
	if _, err := c.conn.Write(rec); err != nil {
		return c.out.setErr(err)
	}
	return nil
}

// writeRecordsLocked splits data into records of typ and appends them to
// the flight buffer; flushLocked sends the flight in one Write. Handshake
// messages and ChangeCipherSpec go this way. Caller holds c.out.
func (c *Conn) writeRecordsLocked(typ uint8, data []byte) error {
	if c.out.err != nil {
		return c.out.err
	}
	frag := maxPlaintext
	if c.maxFragment > 0 && typ == recordTypeHandshake {
		frag = c.maxFragment
	}
	for len(data) > 0 {
		m := min(len(data), frag)
		var err error
		if c.flight, err = c.sealRecord(c.flight, typ, data[:m]); err != nil {
			return c.out.setErr(err)
		}
		data = data[m:]
	}
	return nil
}

func (c *Conn) flushLocked() error {
	if len(c.flight) == 0 {
		return nil
	}
	_, err := c.conn.Write(c.flight)
	c.flight = c.flight[:0]
	if err != nil {
		return c.out.setErr(err)
	}
	return nil
}

// flushPendingLocked finishes a record cut short by a write timeout. Caller
// holds c.out.
func (c *Conn) flushPendingLocked() error {
	if len(c.pending) == 0 {
		return nil
	}
	w, err := c.conn.Write(c.pending)
	c.pending = c.pending[w:]
	if err != nil {
		if isTimeout(err) {
			return err
		}
		return c.out.setErr(err)
	}
	return nil
}

// maxRecordsPerWrite is how many full records one large Write seals before
// handing them to the conn in one call: fewer syscalls for bulk data, while
// a Write of one packet still produces one record and one call.
const maxRecordsPerWrite = 4

// maxBatchRecords caps the records of one write call on the conn when
// WriteRecords seals many small ones (a batch of tunnel packets).
const maxBatchRecords = 64

// writeAppLocked sends b as application data records of up to 16 KiB.
// Caller holds c.out.
func (c *Conn) writeAppLocked(b []byte) (int, error) {
	one := [1][]byte{b}
	return c.writeChunksLocked(one[:])
}

// writeChunksLocked sends each of bufs as its own application data
// records: a buffer starts a new record and never shares one with another
// buffer; one longer than 16 KiB is split. Sealed records are gathered up to
// maxRecordsPerWrite full records' worth of bytes (or maxBatchRecords
// records) and handed to the conn in one call. A write timeout is not
// permanent: records of which no byte got out are dropped and their sequence
// numbers reused (safe: their ciphertext was never seen), a record cut short
// waits in c.pending for the next write and counts as written. Caller holds
// c.out.
func (c *Conn) writeChunksLocked(bufs [][]byte) (int, error) {
	if err := c.flushPendingLocked(); err != nil {
		return 0, err
	}
	budget := maxRecordsPerWrite * (recordHeaderLen + maxPlaintext + c.out.cipher.overhead())
	if c.outBuf == nil {
		c.outBuf = make([]byte, 0, budget)
	}
	var ends, sizes [maxBatchRecords]int
	n := 0
	i, cur := 0, []byte(nil) // cur is the unsent rest of bufs[i-1]
	for len(cur) > 0 || i < len(bufs) {
		buf := c.outBuf[:0]
		k, firstSeq := 0, c.out.seq
		for k < maxBatchRecords {
			if len(cur) == 0 {
				if i == len(bufs) {
					break
				}
				cur = bufs[i]
				i++
				continue
			}
			m := min(len(cur), maxPlaintext)
			if k > 0 && len(buf)+recordHeaderLen+m+c.out.cipher.overhead() > budget {
				break
			}
			var err error
			if buf, err = c.sealRecord(buf, recordTypeApplicationData, cur[:m]); err != nil {
				return n, c.out.setErr(err)
			}
			ends[k], sizes[k] = len(buf), m
			cur = cur[m:]
			k++
		}
		if cap(buf) > cap(c.outBuf) {
			c.outBuf = buf[:0]
		}
		if k == 0 {
			break
		}
		w, err := c.conn.Write(buf)
		if err == nil {
			for j := range k {
				n += sizes[j]
			}
			continue
		}
		if !isTimeout(err) {
			return n, c.out.setErr(err)
		}
		// Records that started going out count; the rest never existed.
		started := 0
		for started < k && (started == 0 || ends[started-1] < w) && w > 0 {
			n += sizes[started]
			started++
		}
		c.out.seq = firstSeq + uint64(started)
		if started > 0 && w < ends[started-1] {
			c.pending = append(c.pendingBuf[:0], buf[w:ends[started-1]]...)
			c.pendingBuf = c.pending[:0]
		}
		return n, err
	}
	return n, nil
}
