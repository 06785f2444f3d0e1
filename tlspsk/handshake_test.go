package tlspsk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestHandshakeEverySuite(t *testing.T) {
	pipes := []struct {
		name string
		pipe pipeFunc
	}{{"pipe", memPipe}, {"tcp", tcpPipe}}
	for _, id := range CipherSuites() {
		for _, ems := range []bool{false, true} {
			for _, p := range pipes {
				t.Run(fmt.Sprintf("%s/ems=%v/%s", CipherSuiteName(id), ems, p.name), func(t *testing.T) {
					ccfg, scfg := clientConfig(), serverConfig()
					ccfg.CipherSuites = []uint16{id}
					ccfg.ExtendedMasterSecret = ems
					c, s := newPair(t, p.pipe, ccfg, scfg)
					for _, st := range []ConnectionState{c.ConnectionState(), s.ConnectionState()} {
						if !st.HandshakeComplete || st.Version != VersionTLS12 || st.CipherSuite != id || st.ExtendedMasterSecret != ems {
							t.Fatalf("state %+v, want suite %s, ems %v", st, CipherSuiteName(id), ems)
						}
					}
					for _, n := range []int{1, maxPlaintext - 1, maxPlaintext, maxPlaintext + 1, 1 << 18} {
						exchange(t, c, s, n)
					}
					closeAndExpectEOF(t, c, s)
				})
			}
		}
	}
}

// closeAndExpectEOF closes c and checks that s reads io.EOF, then closes s.
func closeAndExpectEOF(t *testing.T, c, s *Conn) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 1))
		errc <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-errc; err != io.EOF {
		t.Fatalf("peer read after close: got %v, want io.EOF", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close after close_notify: %v", err)
	}
}

func TestDefaultClientHello(t *testing.T) {
	a, b := memPipe(t)
	w := &onWire{Conn: a}
	c, s := Client(w, clientConfig()), Server(b, serverConfig())
	if cerr, serr := handshakePair(t, c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: %v, %v", cerr, serr)
	}
	if got := c.ConnectionState().CipherSuite; got != TLS_PSK_WITH_AES_256_GCM_SHA384 {
		t.Errorf("default suite %s, want TLS_PSK_WITH_AES_256_GCM_SHA384", CipherSuiteName(got))
	}
	r := bytes.NewReader(w.bytes())
	typ, payload, err := readRecordRaw(r)
	if err != nil || typ != recordTypeHandshake {
		t.Fatalf("first record type %d, %v", typ, err)
	}
	var ch clientHelloMsg
	if !ch.unmarshal(payload) {
		t.Fatal("ClientHello does not parse")
	}
	// tlspsk.md §2–§3: the AEAD suites ahead of CBC, in this order, null
	// compression, no extensions.
	want := []uint16{0x00A9, 0x00A8, 0xCCAB, 0x00AF, 0x008C}
	if !slices.Equal(ch.cipherSuites, want) || !bytes.Equal(ch.compressionMethods, []byte{0}) ||
		ch.present || len(ch.sessionID) != 0 || ch.vers != VersionTLS12 {
		t.Errorf("ClientHello %+v; want suites %04x, no extensions", ch, want)
	}
	// tlspsk.md §2: ClientKeyExchange body is exactly 00 00.
	typ, payload, err = readRecordRaw(r)
	if err != nil || typ != recordTypeHandshake || !bytes.Equal(payload, []byte{typeClientKeyExchange, 0, 0, 2, 0, 0}) {
		t.Errorf("ClientKeyExchange record %d % x, %v; want 10 00 00 02 00 00", typ, payload, err)
	}
}

func TestServerSuitePreference(t *testing.T) {
	tests := []struct {
		name          string
		client        []uint16
		server        []uint16
		want          uint16
		wantHandshake bool
	}{
		{"go-ios offer", []uint16{0x00A9}, nil, 0x00A9, true},
		{"idevice offer", []uint16{0x008C, 0x00AF}, nil, 0x00AF, true},
		{"default offer", nil, nil, 0x00A9, true},
		// A server standing in for a device that prefers CBC (sim's
		// "cbc" preference) still gets it from the default offer.
		{"default offer, CBC-first server", nil, []uint16{0x00AF, 0x00A9, 0x008C}, 0x00AF, true},
		{"server order wins", []uint16{0x00A9, 0x00A8, 0xCCAB}, []uint16{0xCCAB, 0x00A9}, 0xCCAB, true},
		{"unknown suites skipped", []uint16{0x1301, 0xC02C, 0x00A8}, nil, 0x00A8, true},
		{"nothing in common", []uint16{0x00A9}, []uint16{0x008C}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ccfg, scfg := clientConfig(), serverConfig()
			ccfg.CipherSuites, scfg.CipherSuites = tt.client, tt.server
			a, b := memPipe(t)
			c, s := Client(a, ccfg), Server(b, scfg)
			cerr, serr := handshakePair(t, c, s)
			if !tt.wantHandshake {
				wantAlert(t, serr, AlertHandshakeFailure, false)
				wantAlert(t, cerr, AlertHandshakeFailure, true)
				return
			}
			if cerr != nil || serr != nil {
				t.Fatalf("handshake: %v, %v", cerr, serr)
			}
			if got := s.ConnectionState().CipherSuite; got != tt.want {
				t.Errorf("suite %s, want %s", CipherSuiteName(got), CipherSuiteName(tt.want))
			}
		})
	}
}

// wantAlert checks that err is an *AlertError for alert a, sent by the peer
// (remote) or by us.
func wantAlert(t *testing.T, err error, a Alert, remote bool) {
	t.Helper()
	var ae *AlertError
	if !errors.As(err, &ae) {
		t.Fatalf("got error %v (%T), want AlertError %v remote=%v", err, err, a, remote)
	}
	if ae.Alert != a || ae.Remote != remote {
		t.Fatalf("got alert %v remote=%v (%v), want %v remote=%v", ae.Alert, ae.Remote, err, a, remote)
	}
	if !errors.Is(err, &AlertError{Alert: a, Remote: remote}) {
		t.Fatalf("errors.Is does not match %v", err)
	}
}

func TestWrongPSK(t *testing.T) {
	for _, id := range CipherSuites() {
		t.Run(CipherSuiteName(id), func(t *testing.T) {
			ccfg, scfg := clientConfig(), serverConfig()
			ccfg.CipherSuites = []uint16{id}
			ccfg.PSK = bytes.Repeat([]byte{0x42}, 32)
			a, b := memPipe(t)
			c, s := Client(a, ccfg), Server(b, scfg)
			cerr, serr := handshakePair(t, c, s)
			// The server is first to see the client's Finished, under keys
			// that do not match: the record fails authentication.
			wantAlert(t, serr, AlertBadRecordMAC, false)
			if !errors.Is(serr, ErrBadRecordMAC) {
				t.Errorf("server error %v does not wrap ErrBadRecordMAC", serr)
			}
			wantAlert(t, cerr, AlertBadRecordMAC, true)
			// The failure sticks.
			if err := c.Handshake(); !errors.Is(err, &AlertError{Alert: AlertBadRecordMAC, Remote: true}) {
				t.Errorf("client handshake again: %v", err)
			}
			if err := s.Handshake(); !errors.Is(err, ErrBadRecordMAC) {
				t.Errorf("server handshake again: %v", err)
			}
		})
	}
}

func TestPSKByIdentity(t *testing.T) {
	ccfg, scfg := clientConfig(), serverConfig()
	ccfg.Identity = "device-1"
	scfg.PSK = nil
	scfg.IdentityHint = "iosmux hint"
	var asked []string
	scfg.GetPSK = func(id string) ([]byte, error) {
		asked = append(asked, id)
		if id == "device-1" {
			return testPSK, nil
		}
		return nil, errors.New("unknown")
	}
	c, s := newPair(t, memPipe, ccfg, scfg)
	if got := c.ConnectionState().IdentityHint; got != "iosmux hint" {
		t.Errorf("client saw hint %q", got)
	}
	if got := s.ConnectionState().Identity; got != "device-1" || !slices.Equal(asked, []string{"device-1"}) {
		t.Errorf("server identity %q, GetPSK asked %q", got, asked)
	}
	exchange(t, c, s, 1000)

	ccfg.Identity = "stranger"
	a, b := memPipe(t)
	c, s = Client(a, ccfg), Server(b, scfg)
	cerr, serr := handshakePair(t, c, s)
	wantAlert(t, serr, AlertUnknownPSKIdentity, false)
	wantAlert(t, cerr, AlertUnknownPSKIdentity, true)
}

// tamperConn rewrites the first record read through it.
type tamperConn struct {
	net.Conn
	once   sync.Once
	buf    []byte
	tamper func([]byte) []byte
	err    error
}

func (tc *tamperConn) Read(p []byte) (int, error) {
	tc.once.Do(func() {
		typ, payload, err := readRecordRaw(tc.Conn)
		if err != nil {
			tc.err = err
			return
		}
		tc.buf = record(typ, VersionTLS12, tc.tamper(payload))
	})
	if len(tc.buf) > 0 {
		n := copy(p, tc.buf)
		tc.buf = tc.buf[n:]
		return n, nil
	}
	if tc.err != nil {
		return 0, tc.err
	}
	return tc.Conn.Read(p)
}

// TestTranscriptMismatch changes the ClientHello in flight in a way that
// leaves the keys alone (an extra unknown extension): only Finished can
// notice, and must, with decrypt_error.
func TestTranscriptMismatch(t *testing.T) {
	a, b := memPipe(t)
	addExt := func(msg []byte) []byte {
		var ch clientHelloMsg
		if !ch.unmarshal(msg) {
			t.Error("tamper: ClientHello does not parse")
			return msg
		}
		ch.present = true // re-encode with an empty extensions block
		return ch.marshal()
	}
	c, s := Client(a, clientConfig()), Server(&tamperConn{Conn: b, tamper: addExt}, serverConfig())
	cerr, serr := handshakePair(t, c, s)
	wantAlert(t, serr, AlertDecryptError, false)
	if !errors.Is(serr, ErrBadFinished) {
		t.Errorf("server error %v does not wrap ErrBadFinished", serr)
	}
	wantAlert(t, cerr, AlertDecryptError, true)
}

func TestExtendedMasterSecretDisabled(t *testing.T) {
	ccfg, scfg := clientConfig(), serverConfig()
	ccfg.ExtendedMasterSecret = true
	scfg.DisableExtendedMasterSecret = true
	c, s := newPair(t, memPipe, ccfg, scfg)
	if c.ConnectionState().ExtendedMasterSecret || s.ConnectionState().ExtendedMasterSecret {
		t.Error("EMS negotiated although the server disabled it")
	}
	if !c.ConnectionState().SecureRenegotiation {
		t.Error("renegotiation_info not echoed")
	}
	exchange(t, c, s, 100)
}

func TestKeyLog(t *testing.T) {
	var cl, sl bytes.Buffer
	ccfg, scfg := clientConfig(), serverConfig()
	ccfg.KeyLogWriter, scfg.KeyLogWriter = &cl, &sl
	newPair(t, memPipe, ccfg, scfg)
	line := cl.String()
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "CLIENT_RANDOM" || len(f[1]) != 64 || len(f[2]) != 96 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("key log line %q", line)
	}
	if line != sl.String() {
		t.Errorf("client and server key logs differ: %q vs %q", line, sl.String())
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  *Config
		want error
	}{
		{"nil", nil, errNilConfig},
		{"no psk", &Config{}, errNoPSK},
		{"tls13", &Config{PSK: testPSK, MaxVersion: 0x0304}, errVersionConfig},
		{"tls11", &Config{PSK: testPSK, MinVersion: 0x0302}, errVersionConfig},
		{"no known suite", &Config{PSK: testPSK, CipherSuites: []uint16{0xC02C}}, errSuiteConfig},
		{"identity too long", &Config{PSK: testPSK, Identity: strings.Repeat("x", 1<<16)}, errLengthConfig},
		{"psk too long", &Config{PSK: make([]byte, 1<<16)}, errLengthConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := memPipe(t)
			if err := Client(a, tt.cfg).Handshake(); err != tt.want {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}
