package lockdown

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"time"
)

// devConn is the device side of one lockdown connection.
type devConn struct {
	d       *Server
	raw     net.Conn
	pc      *peekConn // raw, read through a buffer so StopSession can peek
	cur     net.Conn  // pc, or tlsConn during a TLS session
	tlsConn *tls.Conn
	session string
	host    *hostPairing // host of the running session
}

// peekConn reads through a bufio.Reader; TLS sits on top of it, so bytes
// buffered while peeking are never lost.
type peekConn struct {
	net.Conn
	br *bufio.Reader
}

func (p *peekConn) Read(b []byte) (int, error) { return p.br.Read(b) }

// ServeConn serves one lockdown connection until the host hangs up, sends
// something unreadable, or Close is called. It blocks; run it from the
// usbmux server's connection goroutine (a PortMux handler for Port).
func (d *Server) ServeConn(conn net.Conn) {
	if !d.track(conn) {
		conn.Close()
		return
	}
	defer func() {
		d.untrack(conn)
		conn.Close()
	}()
	pc := &peekConn{Conn: conn, br: bufio.NewReader(conn)}
	c := &devConn{d: d, raw: conn, pc: pc, cur: pc}
	for {
		req, err := c.readRequest()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				d.log.Debug("lockdown device: read request", "err", err)
			}
			return
		}
		name, _ := req.String("Request")
		d.log.Debug("lockdown device: request", "request", name)
		rep, after := c.handle(name, req)
		if name != "" {
			rep["Request"] = name
		}
		if err := c.write(rep); err != nil {
			d.log.Debug("lockdown device: write reply", "request", name, "err", err)
			return
		}
		if after != nil {
			if err := after(); err != nil {
				d.log.Debug("lockdown device: after reply", "request", name, "err", err)
				return
			}
		}
	}
}

// readRequest reads one request. The wait for its length has no deadline:
// a host may keep an idle lockdown connection, and Close ends the wait. The
// payload must follow within the timeout.
func (c *devConn) readRequest() (Message, error) {
	if err := c.raw.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	var lb [4]byte
	if _, err := io.ReadFull(c.cur, lb[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if err := checkLen(n, MaxFrameLen); err != nil {
		return nil, err
	}
	if err := c.raw.SetReadDeadline(time.Now().Add(c.d.cfg.Timeout)); err != nil {
		return nil, err
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c.cur, payload); err != nil {
		return nil, fmt.Errorf("read %d-byte request: %w", n, err)
	}
	return ParseMessage(payload)
}

func (c *devConn) write(rep Message) error {
	frame, err := encodeFrame(map[string]any(rep))
	if err != nil {
		return err
	}
	if err := c.raw.SetWriteDeadline(time.Now().Add(c.d.cfg.Timeout)); err != nil {
		return err
	}
	_, err = c.cur.Write(frame)
	return err
}

func errReply(code string) Message { return Message{"Error": code} }

// handle answers one request; after, if set, runs once the reply is sent
// (the TLS switch of StartSession and StopSession).
func (c *devConn) handle(name string, req Message) (rep Message, after func() error) {
	switch name {
	case "QueryType":
		return Message{"Type": TypeLockdown}, nil
	case "GetValue":
		return c.getValue(req), nil
	case "SetValue", "RemoveValue":
		return c.setValue(name, req), nil
	case "StartSession":
		return c.startSession(req)
	case "StopSession":
		return c.stopSession(req)
	case "StartService":
		return c.startService(req), nil
	case "Pair":
		return c.pair(req), nil
	case "ValidatePair":
		return c.validatePair(req), nil
	case "Unpair":
		return c.unpair(req), nil
	case "Goodbye":
		return Message{"Result": "Success"}, func() error { return io.EOF }
	case "":
		return errReply(CodeMissingKey), nil
	}
	return errReply(CodeInvalidRequest), nil
}

func (c *devConn) getValue(req Message) Message {
	domain, _ := req.String("Domain")
	key, _ := req.String("Key")
	rep := Message{}
	if domain != "" {
		rep["Domain"] = domain
	}
	if key != "" {
		rep["Key"] = key
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.session == "" {
		// Before a session only the reduced top-level set is readable.
		if domain != "" {
			return errReply(CodeGetProhibited)
		}
		if key == "" {
			vals := map[string]any{}
			for k, v := range d.values[""] {
				if d.public[k] {
					vals[k] = v
				}
			}
			rep["Value"] = vals
			return rep
		}
		if !d.public[key] {
			return errReply(CodeGetProhibited)
		}
	}
	dom, ok := d.values[domain]
	if !ok {
		return errReply(CodeMissingValue)
	}
	if key == "" {
		rep["Value"] = maps.Clone(dom)
		return rep
	}
	v, ok := dom[key]
	if !ok {
		return errReply(CodeMissingValue)
	}
	rep["Value"] = v
	return rep
}

func (c *devConn) setValue(name string, req Message) Message {
	if c.session == "" {
		if name == "SetValue" {
			return errReply(CodeSetProhibited)
		}
		return errReply("RemoveProhibited")
	}
	domain, _ := req.String("Domain")
	key, _ := req.String("Key")
	if key == "" {
		return errReply(CodeMissingKey)
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if name == "RemoveValue" {
		delete(d.values[domain], key)
		return Message{}
	}
	v, ok := req["Value"]
	if !ok {
		return errReply(CodeMissingValue)
	}
	if d.values[domain] == nil {
		d.values[domain] = map[string]any{}
	}
	d.values[domain][key] = v
	return Message{}
}

func (c *devConn) lookupHost(hostID string) *hostPairing {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	return c.d.hosts[hostID]
}

func (c *devConn) startSession(req Message) (Message, func() error) {
	if c.session != "" {
		return errReply("SessionActive"), nil
	}
	hostID, _ := req.String("HostID")
	h := c.lookupHost(hostID)
	if h == nil {
		return errReply(CodeInvalidHostID), nil
	}
	c.session, c.host = c.d.newID(), h
	rep := Message{"SessionID": c.session, "EnableSessionSSL": true}
	return rep, func() error {
		tc := tls.Server(c.pc, c.d.serverTLS(h))
		c.raw.SetDeadline(time.Now().Add(c.d.cfg.Timeout))
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("session TLS handshake: %w", err)
		}
		c.raw.SetDeadline(time.Time{})
		c.tlsConn, c.cur = tc, tc
		st := tc.ConnectionState()
		c.d.log.Debug("lockdown device: session TLS", "host", h.hostID, "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
		if f := c.d.cfg.OnSession; f != nil {
			f(h.hostID, st)
		}
		return nil
	}
}

// isTLSRecord reports whether b can start a TLS record (change_cipher_spec,
// alert, handshake, application_data: 0x14–0x17; TLS 1.3 sends its
// close_notify as application_data). A frame length never starts with one
// of these: that frame would exceed 300 MB, far over MaxFrameLen.
func isTLSRecord(b byte) bool { return 0x14 <= b && b <= 0x17 }

func (c *devConn) stopSession(req Message) (Message, func() error) {
	id, _ := req.String("SessionID")
	if c.session == "" || id != c.session {
		return errReply("InvalidSessionID"), nil
	}
	c.session, c.host = "", nil
	tc := c.tlsConn
	if tc == nil {
		return Message{"Result": "Success"}, nil
	}
	return Message{"Result": "Success"}, func() error {
		c.tlsConn, c.cur = nil, c.pc
		// libimobiledevice closes TLS both ways after StopSession (its
		// close_notify, then it waits for ours); go-ios and pmd3 just go on
		// in plaintext or hang up. Peek to tell which: no deadline, as for
		// the next request.
		b, err := c.pc.br.Peek(1)
		if err != nil {
			return err
		}
		if !isTLSRecord(b[0]) {
			return nil
		}
		c.raw.SetDeadline(time.Now().Add(c.d.cfg.Timeout))
		defer c.raw.SetDeadline(time.Time{})
		var one [1]byte
		if n, err := tc.Read(one[:]); n > 0 || !errors.Is(err, io.EOF) {
			return fmt.Errorf("want close_notify after StopSession, got %d bytes, %v", n, err)
		}
		return tc.CloseWrite()
	}
}

func (c *devConn) startService(req Message) Message {
	if c.session == "" {
		return errReply(CodeSessionInactive)
	}
	name, _ := req.String("Service")
	svc, ok := c.d.cfg.Services[name]
	if !ok || svc.Serve == nil || svc.Available != nil && !svc.Available() {
		return errReply(CodeInvalidService)
	}
	h := c.host
	port, err := c.d.cfg.Ports.ListenOnce(func(conn net.Conn) { c.d.serveService(conn, name, svc, h) })
	if err != nil {
		c.d.log.Debug("lockdown device: open service port", "service", name, "err", err)
		return errReply("ServiceLimit")
	}
	return Message{"Service": name, "Port": uint64(port), "EnableServiceSSL": svc.SSL}
}

func (c *devConn) pair(req Message) Message {
	rec, ok := req.Dict("PairRecord")
	if !ok {
		return errReply(CodeInvalidPairRecord)
	}
	h, err := c.d.checkPairRecord(rec)
	if err != nil {
		c.d.log.Debug("lockdown device: Pair", "err", err)
		return errReply(CodeInvalidPairRecord)
	}
	if trust := c.d.cfg.Trust; trust != nil {
		hostName, _ := req.String("HostName")
		switch trust(hostName) {
		case TrustPending:
			return errReply(CodePairingDialogResponsePending)
		case TrustDeny:
			return errReply(CodeUserDeniedPairing)
		case TrustLocked:
			return errReply(CodePasswordProtected)
		}
	}
	bag := make([]byte, 32)
	io.ReadFull(c.d.cfg.Rand, bag)
	h.escrowBag = bag
	c.d.mu.Lock()
	c.d.hosts[h.hostID] = h
	c.d.mu.Unlock()
	return Message{"EscrowBag": bag}
}

func (c *devConn) validatePair(req Message) Message {
	rec, ok := req.Dict("PairRecord")
	if !ok {
		return errReply(CodeInvalidPairRecord)
	}
	hostID, _ := rec.String("HostID")
	if c.lookupHost(hostID) == nil {
		return errReply(CodeInvalidHostID)
	}
	return Message{}
}

func (c *devConn) unpair(req Message) Message {
	rec, ok := req.Dict("PairRecord")
	if !ok {
		return errReply(CodeInvalidPairRecord)
	}
	hostID, _ := rec.String("HostID")
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if _, ok := c.d.hosts[hostID]; !ok {
		return errReply(CodeInvalidHostID)
	}
	delete(c.d.hosts, hostID)
	return Message{}
}
