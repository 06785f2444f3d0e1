package tlspsk

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Seeds: valid encodings of every message, and the hellos OpenSSL sent in
// the recorded transcripts.
func messageSeeds(f *testing.F, typ uint8) {
	f.Helper()
	for _, m := range []handshakeMessage{
		&clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuites: DefaultClientSuites, compressionMethods: []uint8{0}},
		&clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), sessionID: []byte{1, 2}, cipherSuites: []uint16{0x00A9, 0x00FF}, compressionMethods: []uint8{1, 0},
			helloExtensions: helloExtensions{extendedMasterSecret: true, secureRenegotiationSupported: true}},
		&serverHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuite: 0x00AF},
		&serverHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuite: 0x00A9, helloExtensions: helloExtensions{extendedMasterSecret: true, secureRenegotiationSupported: true}},
		&serverKeyExchangeMsg{identityHint: []byte("hint")},
		&clientKeyExchangeMsg{},
		&clientKeyExchangeMsg{identity: []byte("Client_identity")},
		&finishedMsg{verifyData: make([]byte, 12)},
		&emptyMsg{typ: typeServerHelloDone},
		&emptyMsg{typ: typeHelloRequest},
	} {
		if raw := m.marshal(); raw[0] == typ {
			f.Add(raw)
		}
	}
	for _, tr := range loadTranscripts(f) {
		for _, stream := range []string{tr.ClientToServer, tr.ServerToClient} {
			recs, _ := splitRecords(mustHex(stream))
			msgs, _ := plainFlight(recs)
			for _, m := range msgs {
				if m[0] == typ {
					f.Add(m)
				}
			}
		}
	}
}

func loadTranscripts(tb testing.TB) []transcript {
	files, _ := filepath.Glob("testdata/transcript-*.json")
	var out []transcript
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		var tr transcript
		if err := json.Unmarshal(data, &tr); err != nil {
			tb.Fatal(err)
		}
		out = append(out, tr)
	}
	return out
}

// fuzzMessage checks one parser: no panic, decode→encode→decode stable, and
// no strict prefix of an accepted encoding parses.
func fuzzMessage(f *testing.F, typ uint8) {
	messageSeeds(f, typ)
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newMessage(typ)
		if !m.unmarshal(data) {
			return
		}
		enc := m.marshal()
		m2 := newMessage(typ)
		if !m2.unmarshal(enc) {
			t.Fatalf("re-encoding % x does not parse", enc)
		}
		if enc2 := m2.marshal(); !bytes.Equal(enc, enc2) {
			t.Fatalf("unstable encoding:\n% x\n% x", enc, enc2)
		}
		for _, n := range []int{0, 3, 4, len(data) - 1} {
			if n >= 0 && n < len(data) && newMessage(typ).unmarshal(data[:n]) {
				t.Fatalf("prefix of %d bytes parses", n)
			}
		}
	})
}

func FuzzClientHello(f *testing.F)       { fuzzMessage(f, typeClientHello) }
func FuzzServerHello(f *testing.F)       { fuzzMessage(f, typeServerHello) }
func FuzzServerKeyExchange(f *testing.F) { fuzzMessage(f, typeServerKeyExchange) }
func FuzzClientKeyExchange(f *testing.F) { fuzzMessage(f, typeClientKeyExchange) }
func FuzzFinished(f *testing.F)          { fuzzMessage(f, typeFinished) }
func FuzzServerHelloDone(f *testing.F)   { fuzzMessage(f, typeServerHelloDone) }
func FuzzHelloRequest(f *testing.F)      { fuzzMessage(f, typeHelloRequest) }

// fuzzConn reads from fixed bytes and discards writes.
type fuzzConn struct{ r *bytes.Reader }

func (c fuzzConn) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (c fuzzConn) Write(p []byte) (int, error)    { return len(p), nil }
func (fuzzConn) Close() error                     { return nil }
func (fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (fuzzConn) SetDeadline(time.Time) error      { return nil }
func (fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzRecordLayer feeds arbitrary peer bytes to one side: the record
// parser, reassembly, the handshake and the post-handshake paths must end
// with data or an error, never a panic or a hang. Seeds are the recorded
// OpenSSL streams with our side's Rand seed, so mutations reach past the
// handshake.
func fuzzRecordLayer(f *testing.F, role string) {
	for _, tr := range loadTranscripts(f) {
		if tr.Role == role {
			in := tr.ServerToClient
			if role == "server" {
				in = tr.ClientToServer
			}
			f.Add(tr.Seed, mustHex(in))
		}
	}
	f.Add(byte(0), []byte{22, 3, 3, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, seed byte, data []byte) {
		for _, tr := range loadTranscriptsCached(t) {
			if tr.Role != role || tr.Seed != seed {
				continue
			}
			cfg := tr.config()
			var c *Conn
			if role == "client" {
				c = Client(fuzzConn{bytes.NewReader(data)}, cfg)
			} else {
				c = Server(fuzzConn{bytes.NewReader(data)}, cfg)
			}
			c.Handshake()
			io.Copy(io.Discard, c)
			c.Close()
			return
		}
		c := Server(fuzzConn{bytes.NewReader(data)}, serverConfig())
		if role == "client" {
			c = Client(fuzzConn{bytes.NewReader(data)}, clientConfig())
		}
		io.Copy(io.Discard, c)
	})
}

var transcriptCache []transcript

func loadTranscriptsCached(tb testing.TB) []transcript {
	if transcriptCache == nil {
		transcriptCache = loadTranscripts(tb)
	}
	return transcriptCache
}

func FuzzClientRecordLayer(f *testing.F) { fuzzRecordLayer(f, "client") }
func FuzzServerRecordLayer(f *testing.F) { fuzzRecordLayer(f, "server") }

// FuzzOpen opens arbitrary fragments under every suite: only plaintext or
// ErrBadRecordMAC may come out.
func FuzzOpen(f *testing.F) {
	for i, s := range cipherSuites {
		w, _ := cipherPair(s)
		rec, _ := w.seal(nil, 1, recordTypeApplicationData, []byte("seed record"), detRand(5))
		f.Add(uint8(i), uint64(1), rec)
	}
	f.Fuzz(func(t *testing.T, idx uint8, seq uint64, frag []byte) {
		s := cipherSuites[int(idx)%len(cipherSuites)]
		_, r := cipherPair(s)
		// Into a buffer of its own first (the fragment stays intact), then
		// in place: the same outcome both ways.
		var ptDst []byte
		var errDst error = ErrBadRecordMAC
		if m := r.openLen(len(frag)); m >= 0 {
			ptDst, errDst = r.open(make([]byte, m), seq, recordTypeApplicationData, frag)
		}
		pt, err := r.open(nil, seq, recordTypeApplicationData, frag)
		if err != nil && err != ErrBadRecordMAC {
			t.Fatalf("error %v", err)
		}
		if err == nil && len(pt) > len(frag) {
			t.Fatalf("plaintext longer than the fragment")
		}
		if (err == nil) != (errDst == nil) || !bytes.Equal(pt, ptDst) {
			t.Fatalf("open in place: %v, into dst: %v; plaintexts equal %v", err, errDst, bytes.Equal(pt, ptDst))
		}
	})
}

// FuzzCBCPadding compares the constant-time padding check with a plain one.
func FuzzCBCPadding(f *testing.F) {
	f.Add([]byte{1, 2, 2, 2})
	f.Add(bytes.Repeat([]byte{255}, 300))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) == 0 {
			return
		}
		remove, good := cbcPadding(body)
		p := int(body[len(body)-1])
		wantGood := p+1 <= len(body)
		for i := 0; wantGood && i <= p; i++ {
			wantGood = body[len(body)-1-i] == byte(p)
		}
		if remove != p+1 || (good == 1) != wantGood || (good != 0 && good != 1) {
			t.Fatalf("cbcPadding = %d, %d; want %d, %v", remove, good, p+1, wantGood)
		}
	})
}
