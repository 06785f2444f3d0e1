package tlspsk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is a TLS 1.2 PSK connection over a caller's net.Conn; it implements
// net.Conn. One Read and one Write may run at the same time, each with its
// own deadline; Close may be called from any goroutine, any number of
// times.
type Conn struct {
	conn     net.Conn
	config   *Config
	isClient bool

	handshakeMu   sync.Mutex
	handshakeErr  error
	handshakeDone atomic.Bool
	state         ConnectionState // set under handshakeMu before handshakeDone

	in, out halfConn

	// Read side, under in.
	raw              []byte // ciphertext read from conn
	rawStart, rawEnd int    // unread bytes are raw[rawStart:rawEnd]
	input            []byte // decrypted application data not yet returned (aliases raw)
	hand             []byte // handshake bytes not yet cut into messages
	emptyRecords     int
	warnings         int

	// Write side, under out.
	outBuf          []byte // one application data record being sealed
	flight          []byte // handshake records waiting for flushLocked
	pending         []byte // tail of a record a write timeout cut short
	pendingBuf      []byte
	closeNotifySent bool

	closed    atomic.Bool
	closeOnce sync.Once

	// maxFragment, when > 0, splits outgoing handshake records at this
	// size; tests use it to exercise reassembly on the peer.
	maxFragment int
}

var _ net.Conn = (*Conn)(nil)

// Client returns the client side of a TLS 1.2 PSK connection over conn. The
// handshake runs on the first Read or Write, or on Handshake.
func Client(conn net.Conn, config *Config) *Conn {
	return &Conn{conn: conn, config: config, isClient: true}
}

// Server returns the server side of a TLS 1.2 PSK connection over conn.
func Server(conn net.Conn, config *Config) *Conn {
	return &Conn{conn: conn, config: config}
}

var (
	errShutdown = errors.New("tlspsk: write after CloseWrite")
	errClosed   = fmt.Errorf("tlspsk: use of closed connection: %w", net.ErrClosed)
)

// Handshake runs the handshake if it has not run yet; see HandshakeContext.
func (c *Conn) Handshake() error { return c.HandshakeContext(context.Background()) }

// HandshakeContext runs the handshake if it has not run yet. Cancelling ctx
// before it completes closes the underlying conn and fails the handshake;
// ctx is not kept afterwards. A failed handshake's error is returned by every
// later call, and by Read and Write.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if c.handshakeDone.Load() {
		return nil
	}
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	if c.handshakeErr != nil || c.handshakeDone.Load() {
		return c.handshakeErr
	}
	err := c.config.check(c.isClient)
	if err == nil {
		err = c.runHandshake(ctx)
	}
	if err != nil {
		c.handshakeErr = err
		c.in.Lock()
		c.in.setErr(err)
		c.in.Unlock()
		c.out.Lock()
		c.out.setErr(err)
		c.out.Unlock()
		return err
	}
	c.state.Version = VersionTLS12
	c.state.HandshakeComplete = true
	c.handshakeDone.Store(true)
	return nil
}

// runHandshake runs one role's handshake, interrupted by ctx.
func (c *Conn) runHandshake(ctx context.Context) error {
	if ctx.Done() == nil {
		return c.handshakeLocked()
	}
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(interrupted)
		c.conn.Close()
	})
	err := c.handshakeLocked()
	if !stop() {
		<-interrupted // the AfterFunc ran: wait for it, and report why the conn died
		return fmt.Errorf("tlspsk: handshake interrupted: %w", context.Cause(ctx))
	}
	return err
}

func (c *Conn) handshakeLocked() error {
	c.in.Lock()
	defer c.in.Unlock()
	if c.isClient {
		return (&clientHandshakeState{c: c}).handshake()
	}
	return (&serverHandshakeState{c: c}).handshake()
}

// ConnectionState describes the connection; HandshakeComplete is false until
// the handshake has succeeded.
func (c *Conn) ConnectionState() ConnectionState {
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	return c.state
}

// Read reads application data, running the handshake first if needed. It
// returns io.EOF after the peer's close_notify; an EOF without close_notify
// is an error wrapping io.ErrUnexpectedEOF. Timeouts do not break the
// connection.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.in.Lock()
	defer c.in.Unlock()
	for len(c.input) == 0 {
		n, err := c.readRecord(p, false)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			return n, nil
		}
	}
	n := copy(p, c.input)
	c.input = c.input[n:]
	return n, nil
}

// Write sends b as application data records of at most 16 KiB, running
// the handshake first if needed. After a timeout the connection stays
// usable: the bytes reported written are committed to the stream.
func (c *Conn) Write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, errClosed
	}
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return 0, c.out.err
	}
	if c.closeNotifySent {
		return 0, errShutdown
	}
	return c.writeAppLocked(b)
}

// ReadRecords is the reading half of WriteRecords: each buffer receives
// the data of one application data record (sizes[i] bytes), so a peer that
// sends one packet per record is read one packet per buffer, decrypted in
// place. It blocks until the first record is there, then takes further
// records only while whole ones are already buffered: it never waits for
// the network once it has data. A record longer than its buffer continues
// in the next buffer (or the next call), so no byte is lost. Errors after
// the first record are reported by the next call.
func (c *Conn) ReadRecords(bufs [][]byte, sizes []int) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.in.Lock()
	defer c.in.Unlock()
	k := 0
	for k < len(bufs) && k < len(sizes) {
		if len(bufs[k]) == 0 {
			sizes[k] = 0
			k++
			continue
		}
		if len(c.input) > 0 {
			m := copy(bufs[k], c.input)
			c.input = c.input[m:]
			sizes[k] = m
			k++
			continue
		}
		if k > 0 && !c.recordBufferedLocked() {
			break
		}
		n, err := c.readRecord(bufs[k], false)
		if err != nil {
			if k > 0 {
				break
			}
			return 0, err
		}
		if n > 0 {
			sizes[k] = n
			k++
		}
	}
	return k, nil
}

// WriteRecords sends each buffer of bufs as its own application data
// record, so a peer that reads one record at a time sees one buffer per
// read, while the records go to the conn in as few write calls as fit
// (up to 64 records or about 64 KiB per call). It is how the tunnel sends a
// batch of IPv6 packets: one record per packet, as the device's forwarder
// needs (tunnel.md §3.1), without one system call per packet. A buffer over
// 16 KiB is split into several records; empty buffers send nothing. It
// returns the bytes of bufs committed to the stream; after a timeout the
// connection stays usable, as with Write.
func (c *Conn) WriteRecords(bufs [][]byte) (int, error) {
	if c.closed.Load() {
		return 0, errClosed
	}
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return 0, c.out.err
	}
	if c.closeNotifySent {
		return 0, errShutdown
	}
	return c.writeChunksLocked(bufs)
}

// CloseWrite sends close_notify without closing the conn, so the peer reads
// io.EOF while this side can still read. Further Writes fail.
func (c *Conn) CloseWrite() error {
	if !c.handshakeDone.Load() {
		return errors.New("tlspsk: CloseWrite before the handshake completed")
	}
	c.out.Lock()
	defer c.out.Unlock()
	return c.closeNotifyLocked()
}

func (c *Conn) closeNotifyLocked() error {
	if c.closeNotifySent {
		return nil
	}
	c.closeNotifySent = true
	return c.sendAlertLocked(AlertCloseNotify)
}

// Close sends close_notify (once, best effort, and only when no Write is in
// flight: a Close that interrupts a blocked Write must not wait for it) and
// closes the underlying conn, which makes pending Reads and Writes return.
// It reports only the underlying Close error; use CloseWrite to learn
// whether close_notify was written. Calls after the first return nil.
func (c *Conn) Close() error {
	err := errAlreadyClosed
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.handshakeDone.Load() && c.out.TryLock() {
			if c.out.err == nil {
				// Do not let a peer that stopped reading hold Close.
				c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.closeNotifyLocked()
			}
			c.out.Unlock()
		}
		err = c.conn.Close()
	})
	if err == errAlreadyClosed {
		return nil
	}
	return err
}

var errAlreadyClosed = errors.New("already closed")

// NetConn returns the underlying conn. Reading or writing it directly
// corrupts the TLS stream.
func (c *Conn) NetConn() net.Conn { return c.conn }

func (c *Conn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// Handshake plumbing shared by both roles. The handshake holds c.in for its
// whole run and takes c.out around each write.

// readHandshake returns the next complete handshake message (a copy). A
// HelloRequest reaching a client mid-handshake is dropped, as RFC 5246
// §7.4.1.1 asks.
func (c *Conn) readHandshake() ([]byte, error) {
	for {
		if len(c.hand) >= 4 && handshakeBodyLen(c.hand) > maxHandshake {
			return nil, c.fail(AlertDecodeError, errors.New("tlspsk: handshake message too long"))
		}
		if msg := c.nextHandshake(); msg != nil {
			if c.isClient && msg[0] == typeHelloRequest && len(msg) == 4 {
				continue
			}
			return msg, nil
		}
		if _, err := c.readRecord(nil, false); err != nil {
			return nil, handshakeReadErr(err)
		}
	}
}

// readChangeCipherSpec waits for the peer's ChangeCipherSpec and switches
// the read keys.
func (c *Conn) readChangeCipherSpec() error {
	for c.in.next != nil {
		if _, err := c.readRecord(nil, true); err != nil {
			return handshakeReadErr(err)
		}
	}
	return nil
}

func handshakeReadErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("tlspsk: peer closed the connection during the handshake: %w", err)
	}
	return err
}

// readHandshakeMsg reads the next message, which must be one of want, and
// parses it.
func (c *Conn) readHandshakeMsg(want ...uint8) (handshakeMessage, []byte, error) {
	raw, err := c.readHandshake()
	if err != nil {
		return nil, nil, err
	}
	ok := false
	for _, w := range want {
		ok = ok || raw[0] == w
	}
	if !ok {
		return nil, nil, c.fail(AlertUnexpectedMessage, fmt.Errorf("tlspsk: unexpected %s message", messageName(raw[0])))
	}
	msg := newMessage(raw[0])
	if !msg.unmarshal(raw) {
		return nil, nil, c.fail(AlertDecodeError, fmt.Errorf("tlspsk: malformed %s message", messageName(raw[0])))
	}
	return msg, raw, nil
}

// writeHandshake queues handshake messages in the flight buffer.
func (c *Conn) writeHandshake(msg []byte) error {
	c.out.Lock()
	defer c.out.Unlock()
	return c.writeRecordsLocked(recordTypeHandshake, msg)
}

// writeChangeCipherSpec queues ChangeCipherSpec and switches the write keys.
func (c *Conn) writeChangeCipherSpec() error {
	c.out.Lock()
	defer c.out.Unlock()
	if err := c.writeRecordsLocked(recordTypeChangeCipherSpec, []byte{1}); err != nil {
		return err
	}
	c.out.changeCipherSpec()
	return nil
}

// flush sends the queued flight in one Write.
func (c *Conn) flush() error {
	c.out.Lock()
	defer c.out.Unlock()
	return c.flushLocked()
}

func messageName(typ uint8) string {
	switch typ {
	case typeHelloRequest:
		return "HelloRequest"
	case typeClientHello:
		return "ClientHello"
	case typeServerHello:
		return "ServerHello"
	case typeNewSessionTicket:
		return "NewSessionTicket"
	case typeCertificate:
		return "Certificate"
	case typeServerKeyExchange:
		return "ServerKeyExchange"
	case typeCertificateRequest:
		return "CertificateRequest"
	case typeServerHelloDone:
		return "ServerHelloDone"
	case typeCertificateVerify:
		return "CertificateVerify"
	case typeClientKeyExchange:
		return "ClientKeyExchange"
	case typeFinished:
		return "Finished"
	}
	return fmt.Sprintf("type-%d", typ)
}
