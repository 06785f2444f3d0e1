package tlspsk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// script plays the peer of a Conn under test, raw, over loopback TCP (which
// buffers, so our alerts never block on a peer that stopped reading).
type script func(t *testing.T, peer net.Conn)

// runScripted runs conn's handshake against script and returns the alert
// the script saw afterwards (255 if none) and the handshake error.
func runScripted(t *testing.T, client bool, cfg *Config, s script) (Alert, error) {
	t.Helper()
	a, b := tcpPipe(t)
	var c *Conn
	if client {
		c = Client(a, cfg)
	} else {
		c = Server(a, cfg)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s(t, b)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.HandshakeContext(ctx)
	<-done
	// The alert our side sent, if any, is the next record the peer gets.
	b.SetReadDeadline(time.Now().Add(time.Second))
	got := Alert(255)
	for {
		typ, payload, rerr := readRecordRaw(b)
		if rerr != nil {
			break
		}
		if typ == recordTypeAlert && len(payload) == 2 {
			got = Alert(payload[1])
			break
		}
	}
	return got, err
}

func serverHello(mod func(*serverHelloMsg)) []byte {
	sh := &serverHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuite: TLS_PSK_WITH_AES_256_GCM_SHA384}
	if mod != nil {
		mod(sh)
	}
	return sh.marshal()
}

var serverHelloDone = (&emptyMsg{typ: typeServerHelloDone}).marshal()

// answerHello reads the ClientHello and writes the given records.
func answerHello(records ...[]byte) script {
	return func(t *testing.T, peer net.Conn) {
		if _, _, err := readRecordRaw(peer); err != nil {
			t.Errorf("script: reading ClientHello: %v", err)
			return
		}
		for _, r := range records {
			peer.Write(r)
		}
	}
}

// withTrailing adds a byte to a message body, length included.
func withTrailing(msg []byte) []byte {
	msg = append(bytes.Clone(msg), 0)
	n := handshakeBodyLen(msg) + 1
	msg[1], msg[2], msg[3] = byte(n>>16), byte(n>>8), byte(n)
	return msg
}

func hs(msgs ...[]byte) []byte {
	return record(recordTypeHandshake, VersionTLS12, bytes.Join(msgs, nil))
}

func TestClientRejects(t *testing.T) {
	big := make([]byte, maxPlaintext+1)
	tests := []struct {
		name  string
		emsOn bool
		s     script
		alert Alert
	}{
		{"TLS 1.1 ServerHello", false, answerHello(hs(serverHello(func(m *serverHelloMsg) { m.vers = versionTLS11 }))), AlertProtocolVersion},
		{"TLS 1.0 ServerHello", false, answerHello(hs(serverHello(func(m *serverHelloMsg) { m.vers = versionTLS10 }))), AlertProtocolVersion},
		{"SSL 3.0 ServerHello", false, answerHello(hs(serverHello(func(m *serverHelloMsg) { m.vers = versionSSL30 }))), AlertProtocolVersion},
		{"compression", false, answerHello(hs(serverHello(func(m *serverHelloMsg) { m.compressionMethod = 1 }))), AlertIllegalParameter},
		{"suite not offered", false, answerHello(hs(serverHello(func(m *serverHelloMsg) { m.cipherSuite = 0x008D }))), AlertIllegalParameter}, // PSK-AES256-CBC-SHA: neither offered nor implemented
		{"unsolicited EMS", false, answerHello(hs(serverHello(func(m *serverHelloMsg) { m.extendedMasterSecret = true }))), AlertUnsupportedExtension},
		{"unsolicited RI", false, answerHello(hs(serverHello(func(m *serverHelloMsg) { m.secureRenegotiationSupported = true }))), AlertUnsupportedExtension},
		{"non-empty RI", true, answerHello(hs(serverHello(func(m *serverHelloMsg) {
			m.secureRenegotiationSupported, m.secureRenegotiation = true, []byte{1}
		}))), AlertHandshakeFailure},
		{"trailing byte", false, answerHello(hs(withTrailing(serverHello(nil)))), AlertDecodeError},
		{"certificate", false, answerHello(hs(serverHello(nil), []byte{typeCertificate, 0, 0, 3, 0, 0, 0})), AlertUnexpectedMessage},
		{"finished first", false, answerHello(hs([]byte{typeFinished, 0, 0, 12}, make([]byte, 12))), AlertUnexpectedMessage},
		{"CCS before keys", false, answerHello(hs(serverHello(nil)), record(recordTypeChangeCipherSpec, VersionTLS12, []byte{1})), AlertUnexpectedMessage},
		{"application data", false, answerHello(record(recordTypeApplicationData, VersionTLS12, []byte("hi"))), AlertUnexpectedMessage},
		{"unknown record type", false, answerHello(record(99, VersionTLS12, []byte("hi"))), AlertUnexpectedMessage},
		{"record version 2.0", false, answerHello(record(recordTypeHandshake, 0x0200, serverHello(nil))), AlertProtocolVersion},
		{"record version after hello", false, answerHello(hs(serverHello(nil)), record(recordTypeHandshake, versionTLS10, serverHelloDone)), AlertProtocolVersion},
		{"plaintext record too long", false, answerHello(record(recordTypeHandshake, VersionTLS12, big)), AlertRecordOverflow},
		{"empty handshake record", false, answerHello(record(recordTypeHandshake, VersionTLS12, nil)), AlertUnexpectedMessage},
		{"message too long", false, answerHello(hs([]byte{typeServerHello, 0xff, 0xff, 0xff})), AlertDecodeError},
		{"malformed alert", false, answerHello(record(recordTypeAlert, VersionTLS12, []byte{2, 40, 0})), AlertDecodeError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := clientConfig()
			cfg.ExtendedMasterSecret = tt.emsOn
			sent, err := runScripted(t, true, cfg, tt.s)
			wantAlert(t, err, tt.alert, false)
			if sent != tt.alert {
				t.Errorf("peer saw alert %v, want %v", sent, tt.alert)
			}
		})
	}
}

func TestClientRemoteAlert(t *testing.T) {
	_, err := runScripted(t, true, clientConfig(), answerHello(record(recordTypeAlert, versionTLS10, []byte{2, byte(AlertHandshakeFailure)})))
	wantAlert(t, err, AlertHandshakeFailure, true)
}

func clientHello(mod func(*clientHelloMsg)) []byte {
	ch := &clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32),
		cipherSuites: []uint16{TLS_PSK_WITH_AES_256_GCM_SHA384}, compressionMethods: []uint8{0}}
	if mod != nil {
		mod(ch)
	}
	return ch.marshal()
}

func send(records ...[]byte) script {
	return func(t *testing.T, peer net.Conn) {
		for _, r := range records {
			peer.Write(r)
		}
	}
}

func TestServerRejects(t *testing.T) {
	dupExt := func() []byte {
		m := clientHello(func(m *clientHelloMsg) { m.extendedMasterSecret = true })
		// Append a second extended_master_secret inside the block.
		m = append(m, 0x00, 0x17, 0x00, 0x00)
		m[3] += 4
		m[len(m)-9+1] += 4 // extensions block length (low byte)
		return m
	}
	tests := []struct {
		name  string
		s     script
		alert Alert
	}{
		{"TLS 1.1", send(hs(clientHello(func(m *clientHelloMsg) { m.vers = versionTLS11 }))), AlertProtocolVersion},
		{"TLS 1.0", send(hs(clientHello(func(m *clientHelloMsg) { m.vers = versionTLS10 }))), AlertProtocolVersion},
		{"SSL 3.0", send(record(recordTypeHandshake, versionSSL30, clientHello(func(m *clientHelloMsg) { m.vers = versionSSL30 }))), AlertProtocolVersion},
		{"SSL 2.0 hello", send([]byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}), AlertProtocolVersion},
		{"compression only", send(hs(clientHello(func(m *clientHelloMsg) { m.compressionMethods = []uint8{1} }))), AlertHandshakeFailure},
		{"no common suite", send(hs(clientHello(func(m *clientHelloMsg) { m.cipherSuites = []uint16{0xC02C} }))), AlertHandshakeFailure},
		{"non-empty RI", send(hs(clientHello(func(m *clientHelloMsg) {
			m.secureRenegotiationSupported, m.secureRenegotiation = true, []byte{1, 2}
		}))), AlertHandshakeFailure},
		{"duplicate extension", send(hs(dupExt())), AlertDecodeError},
		{"no suites", send(hs(clientHello(func(m *clientHelloMsg) { m.cipherSuites = nil }))), AlertDecodeError},
		{"ServerHello to a server", send(hs(serverHello(nil))), AlertUnexpectedMessage},
		{"finished instead of CKE", send(hs(clientHello(nil), []byte{typeFinished, 0, 0, 12}, make([]byte, 12))), AlertUnexpectedMessage},
		{"ciphertext too long", send(record(recordTypeApplicationData, VersionTLS12, make([]byte, maxCiphertext+1))), AlertRecordOverflow},
		{"CCS without keys", send(hs(clientHello(nil)), record(recordTypeChangeCipherSpec, VersionTLS12, []byte{1})), AlertUnexpectedMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent, err := runScripted(t, false, serverConfig(), tt.s)
			wantAlert(t, err, tt.alert, false)
			if sent != tt.alert {
				t.Errorf("peer saw alert %v, want %v", sent, tt.alert)
			}
		})
	}
}

func TestServerEOFDuringHandshake(t *testing.T) {
	_, err := runScripted(t, false, serverConfig(), func(t *testing.T, peer net.Conn) {
		peer.Write(hs(clientHello(nil))[:20])
		peer.(*net.TCPConn).CloseWrite()
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %v, want io.ErrUnexpectedEOF", err)
	}
}

// inject writes a record as c would, bypassing the checks of Write; mutate
// may damage the sealed record first.
func inject(t *testing.T, c *Conn, typ uint8, payload []byte, mutate func([]byte) []byte) {
	t.Helper()
	c.out.Lock()
	defer c.out.Unlock()
	rec, err := c.sealRecord(nil, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		rec = mutate(rec)
	}
	if _, err := c.conn.Write(rec); err != nil {
		t.Fatal(err)
	}
}

func readErr(c *Conn) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 100))
	return err
}

func TestAfterHandshakeRejects(t *testing.T) {
	tests := []struct {
		name    string
		typ     uint8
		payload []byte
		mutate  func([]byte) []byte
		alert   Alert
	}{
		{"flipped bit", recordTypeApplicationData, []byte("data"), func(r []byte) []byte { r[len(r)-1] ^= 1; return r }, AlertBadRecordMAC},
		{"flipped header type", recordTypeApplicationData, []byte("data"), func(r []byte) []byte { r[0] = recordTypeHandshake; return r }, AlertBadRecordMAC},
		{"plaintext too long", recordTypeApplicationData, make([]byte, maxPlaintext+1), nil, AlertRecordOverflow},
		{"ChangeCipherSpec", recordTypeChangeCipherSpec, []byte{1}, nil, AlertUnexpectedMessage},
		{"Finished", recordTypeHandshake, append([]byte{typeFinished, 0, 0, 12}, make([]byte, 12)...), nil, AlertUnexpectedMessage},
		{"malformed HelloRequest", recordTypeHandshake, []byte{typeHelloRequest, 0, 0, 1, 0}, nil, AlertDecodeError},
		{"empty handshake record", recordTypeHandshake, nil, nil, AlertUnexpectedMessage},
		{"bad record version", recordTypeApplicationData, []byte("x"), func(r []byte) []byte { r[2] = 1; return r }, AlertProtocolVersion},
	}
	for _, id := range CipherSuites() {
		for _, tt := range tests {
			t.Run(CipherSuiteName(id)+"/"+tt.name, func(t *testing.T) {
				ccfg := clientConfig()
				ccfg.CipherSuites = []uint16{id}
				c, s := newPair(t, tcpPipe, ccfg, serverConfig())
				inject(t, s, tt.typ, tt.payload, tt.mutate)
				err := readErr(c)
				wantAlert(t, err, tt.alert, false)
				wantAlert(t, readErr(s), tt.alert, true)
				// Sticks: the next Read and Write fail the same way.
				if err2 := readErr(c); err2 != err {
					t.Errorf("second read: %v", err2)
				}
				if _, err := c.Write([]byte("x")); !errors.Is(err, &AlertError{Alert: tt.alert}) {
					t.Errorf("write after failure: %v", err)
				}
			})
		}
	}
}

func TestReplayedRecord(t *testing.T) {
	c, s := newPair(t, tcpPipe, clientConfig(), serverConfig())
	var saved []byte
	inject(t, s, recordTypeApplicationData, []byte("once"), func(r []byte) []byte { saved = bytes.Clone(r); return r })
	buf := make([]byte, 10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "once" {
		t.Fatalf("read: %q, %v", buf[:n], err)
	}
	s.conn.Write(saved)
	wantAlert(t, readErr(c), AlertBadRecordMAC, false)
}

func TestTruncation(t *testing.T) {
	t.Run("inside a record", func(t *testing.T) {
		c, s := newPair(t, tcpPipe, clientConfig(), serverConfig())
		inject(t, s, recordTypeApplicationData, []byte("truncated"), func(r []byte) []byte { return r[:len(r)-3] })
		s.conn.Close()
		if err := readErr(c); !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, errTruncatedRecord) {
			t.Errorf("got %v, want a truncated-record error", err)
		}
	})
	t.Run("without close_notify", func(t *testing.T) {
		c, s := newPair(t, tcpPipe, clientConfig(), serverConfig())
		s.conn.Close()
		if err := readErr(c); !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, errEOFNoCloseNotify) {
			t.Errorf("got %v, want an EOF-without-close_notify error", err)
		}
	})
	t.Run("remote fatal alert", func(t *testing.T) {
		c, s := newPair(t, tcpPipe, clientConfig(), serverConfig())
		inject(t, s, recordTypeAlert, []byte{alertLevelFatal, byte(AlertInternalError)}, nil)
		wantAlert(t, readErr(c), AlertInternalError, true)
	})
}

func TestEmptyRecordsAndWarnings(t *testing.T) {
	c, s := newPair(t, tcpPipe, clientConfig(), serverConfig())
	// A few empty records and warnings are harmless.
	for range 50 {
		inject(t, s, recordTypeApplicationData, nil, nil)
	}
	for range maxWarnings {
		inject(t, s, recordTypeAlert, []byte{alertLevelWarning, byte(AlertUserCanceled)}, nil)
	}
	inject(t, s, recordTypeApplicationData, []byte("ok"), nil)
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q, %v", buf, err)
	}
	// Floods are not.
	for range maxEmptyRecords + 1 {
		inject(t, c, recordTypeApplicationData, nil, nil)
	}
	wantAlert(t, readErr(s), AlertUnexpectedMessage, false)

	c, s = newPair(t, tcpPipe, clientConfig(), serverConfig())
	for range maxWarnings + 1 {
		inject(t, s, recordTypeAlert, []byte{alertLevelWarning, byte(AlertUserCanceled)}, nil)
	}
	wantAlert(t, readErr(c), AlertUnexpectedMessage, false)
}

// TestRenegotiationRefused: a HelloRequest to the client and a ClientHello
// to the server after the handshake each get a no_renegotiation warning,
// and the connection carries on.
func TestRenegotiationRefused(t *testing.T) {
	for _, dir := range []string{"HelloRequest to client", "ClientHello to server"} {
		t.Run(dir, func(t *testing.T) {
			ccfg := clientConfig()
			ccfg.ExtendedMasterSecret = true
			c, s := newPair(t, tcpPipe, ccfg, serverConfig())
			from, to := s, c
			msg := (&emptyMsg{typ: typeHelloRequest}).marshal()
			if dir == "ClientHello to server" {
				from, to = c, s
				msg = clientHello(nil)
			}
			// Split the message over two records to exercise reassembly.
			inject(t, from, recordTypeHandshake, msg[:3], nil)
			inject(t, from, recordTypeHandshake, msg[3:], nil)
			inject(t, from, recordTypeApplicationData, []byte("after"), nil)
			buf := make([]byte, 5)
			if _, err := io.ReadFull(to, buf); err != nil || string(buf) != "after" {
				t.Fatalf("read %q, %v", buf, err)
			}
			// The refusal is the next record the other side reads.
			from.in.Lock()
			_, err := from.readRecord(nil, false)
			warned := from.warnings
			from.in.Unlock()
			if err != nil || warned != 1 {
				t.Fatalf("reading the refusal: %v, warnings %d", err, warned)
			}
			exchange(t, c, s, 100000)
		})
	}
}
