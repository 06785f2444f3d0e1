package tlspsk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "re-record testdata/transcript-*.json against the openssl binary")

// A transcript is one connection between tlspsk and OpenSSL, recorded with
// -update and replayed offline: our side runs again with the same
// Config.Rand and must write exactly the recorded bytes while reading the
// peer's recorded bytes (crypto/tls handshake_test.go, x/crypto
// ssh/test/recording_test.go).
type transcript struct {
	Role           string `json:"role"` // our role: "client" (vs s_server) or "server" (vs s_client)
	Suite          string `json:"suite"`
	PSK            string `json:"psk"`
	Seed           byte   `json:"seed"`          // detRand seed of our Config.Rand
	ClientEMS      bool   `json:"client_ems"`    // our client offers EMS
	IdentityHint   string `json:"identity_hint"` // s_server -psk_hint
	OpenSSL        string `json:"openssl"`       // command line and version, for the record
	ClientToServer string `json:"client_to_server"`
	ServerToClient string `json:"server_to_client"`
	// OpenSSLKeyLog is the CLIENT_RANDOM line OpenSSL wrote (-keylogfile):
	// the master secret as an independent implementation derived it.
	OpenSSLKeyLog string `json:"openssl_keylog"`
}

var transcriptCases = []struct {
	file  string
	role  string
	suite uint16
	ems   bool
	hint  string
}{
	{"client-AES256-GCM", "client", TLS_PSK_WITH_AES_256_GCM_SHA384, false, "iosmux-hint"},
	{"client-AES256-CBC-EMS", "client", TLS_PSK_WITH_AES_256_CBC_SHA384, true, ""},
	{"client-CHACHA20", "client", TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, false, ""},
	{"server-AES256-GCM", "server", TLS_PSK_WITH_AES_256_GCM_SHA384, false, ""},
	{"server-AES128-CBC-SHA", "server", TLS_PSK_WITH_AES_128_CBC_SHA, false, ""},
	{"server-AES128-GCM", "server", TLS_PSK_WITH_AES_128_GCM_SHA256, false, ""},
}

// openSSLName maps our suites to OpenSSL cipher names.
var openSSLName = map[uint16]string{
	TLS_PSK_WITH_AES_256_GCM_SHA384:       "PSK-AES256-GCM-SHA384",
	TLS_PSK_WITH_AES_128_GCM_SHA256:       "PSK-AES128-GCM-SHA256",
	TLS_PSK_WITH_AES_256_CBC_SHA384:       "PSK-AES256-CBC-SHA384",
	TLS_PSK_WITH_AES_128_CBC_SHA:          "PSK-AES128-CBC-SHA",
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256: "PSK-CHACHA20-POLY1305",
}

const (
	clientLine = "hello from tlspsk\n"
	serverLine = "hello from openssl\n"
)

func reverseLine(s string) string {
	r := []byte(strings.TrimSuffix(s, "\n"))
	slices.Reverse(r)
	return string(r) + "\n"
}

// clientScript is what our client does against `openssl s_server -rev`:
// one line out, its reversal back, close_notify.
func clientScript(c *Conn) error {
	if _, err := io.WriteString(c, clientLine); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading reply: %w", err)
	}
	if line != reverseLine(clientLine) {
		return fmt.Errorf("reply %q", line)
	}
	return c.Close()
}

// serverScript is what our server does against `openssl s_client`: read
// the client's line, answer with its reversal, close_notify.
func serverScript(c *Conn) error {
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading line: %w", err)
	}
	if line != serverLine {
		return fmt.Errorf("line %q", line)
	}
	if _, err := io.WriteString(c, reverseLine(line)); err != nil {
		return err
	}
	return c.Close()
}

func (tr *transcript) config() *Config {
	cfg := &Config{PSK: mustHex(tr.PSK), Rand: detRand(tr.Seed)}
	id, _ := hexUint16(tr.Suite)
	if tr.Role == "client" {
		cfg.CipherSuites = []uint16{id}
		cfg.ExtendedMasterSecret = tr.ClientEMS
	}
	return cfg
}

func hexUint16(s string) (uint16, error) {
	var v uint16
	_, err := fmt.Sscanf(s, "0x%04X", &v)
	return v, err
}

func TestTranscripts(t *testing.T) {
	for i, tc := range transcriptCases {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "transcript-"+tc.file+".json")
			if *update {
				tr := recordTranscript(t, tc.role, tc.suite, tc.ems, tc.hint, byte(40+i))
				data, _ := json.MarshalIndent(tr, "", "  ")
				if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestTranscripts -update with openssl installed)", err)
			}
			var tr transcript
			if err := json.Unmarshal(data, &tr); err != nil {
				t.Fatal(err)
			}
			t.Run("replay", func(t *testing.T) { replay(t, &tr) })
			t.Run("key schedule", func(t *testing.T) { checkTranscriptKeys(t, &tr) })
		})
	}
}

// replay runs our side against the recorded peer bytes.
func replay(t *testing.T, tr *transcript) {
	rc := &replayConn{rx: mustHex(tr.ServerToClient), want: mustHex(tr.ClientToServer)}
	if tr.Role == "server" {
		rc.rx, rc.want = rc.want, rc.rx
	}
	var c *Conn
	var script func(*Conn) error
	if tr.Role == "client" {
		c, script = Client(rc, tr.config()), clientScript
	} else {
		c, script = Server(rc, tr.config()), serverScript
	}
	if err := script(c); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if rc.err != nil {
		t.Fatal(rc.err)
	}
	if len(rc.want) != 0 {
		t.Fatalf("replay: %d recorded bytes not written", len(rc.want))
	}
	if st := c.ConnectionState(); fmt.Sprintf("0x%04X", st.CipherSuite) != tr.Suite {
		t.Errorf("suite %04x, transcript %s", st.CipherSuite, tr.Suite)
	}
}

// replayConn plays recorded bytes and checks every byte written.
type replayConn struct {
	rx, want []byte
	err      error
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.rx) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.rx)
	r.rx = r.rx[n:]
	return n, nil
}

func (r *replayConn) Write(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !bytes.HasPrefix(r.want, p) {
		off := len(p)
		for i := range min(len(p), len(r.want)) {
			if p[i] != r.want[i] {
				off = i
				break
			}
		}
		r.err = fmt.Errorf("replay: written bytes differ from the recording at offset %d of this write (% x...)", off, p[off:min(len(p), off+16)])
		return 0, r.err
	}
	r.want = r.want[len(p):]
	return len(p), nil
}

func (r *replayConn) Close() error                     { return nil }
func (r *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (r *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (r *replayConn) SetDeadline(time.Time) error      { return nil }
func (r *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (r *replayConn) SetWriteDeadline(time.Time) error { return nil }

// recordingConn keeps what is read and written.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	rx, tx bytes.Buffer
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.rx.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recordingConn) Write(p []byte) (int, error) {
	n, err := r.Conn.Write(p)
	r.mu.Lock()
	r.tx.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

// recordTranscript runs our side against the openssl binary and keeps the bytes.
func recordTranscript(t *testing.T, role string, suite uint16, ems bool, hint string, seed byte) *transcript {
	t.Helper()
	version, err := exec.Command("openssl", "version").Output()
	if err != nil {
		t.Fatalf("-update needs the openssl binary: %v", err)
	}
	tr := &transcript{Role: role, Suite: fmt.Sprintf("0x%04X", suite), PSK: hex.EncodeToString(testPSK),
		Seed: seed, ClientEMS: ems, IdentityHint: hint}
	keylog := filepath.Join(t.TempDir(), "keylog")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	common := []string{"-psk", tr.PSK, "-tls1_2", "-cipher", openSSLName[suite], "-keylogfile", keylog}

	var args []string
	var cmd *exec.Cmd
	var raw net.Conn
	if role == "client" {
		port := freePort(t)
		args = append([]string{"s_server", "-nocert", "-psk_identity", "", "-accept", fmt.Sprintf("127.0.0.1:%d", port), "-naccept", "1", "-rev"}, common...)
		if hint != "" {
			args = append(args, "-psk_hint", hint)
		}
		cmd = exec.CommandContext(ctx, "openssl", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if t.Failed() {
				t.Logf("openssl output:\n%s", out.String())
			}
		}()
		raw = dialRetry(t, ctx, fmt.Sprintf("127.0.0.1:%d", port))
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		args = append([]string{"s_client", "-connect", ln.Addr().String(), "-psk_identity", "", "-quiet"}, common...)
		cmd = exec.CommandContext(ctx, "openssl", args...)
		stdin, _ := cmd.StdinPipe()
		defer stdin.Close()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if t.Failed() {
				t.Logf("openssl output:\n%s", out.String())
			}
		}()
		io.WriteString(stdin, serverLine) // stdin stays open: EOF would end s_client early
		if raw, err = ln.Accept(); err != nil {
			t.Fatal(err)
		}
	}
	tr.OpenSSL = strings.TrimSpace(string(version)) + ": openssl " + strings.Join(args, " ")
	rec := &recordingConn{Conn: raw}
	var err2 error
	if role == "client" {
		err2 = clientScript(Client(rec, tr.config()))
	} else {
		err2 = serverScript(Server(rec, tr.config()))
	}
	if err2 != nil {
		t.Fatalf("recording: %v", err2)
	}
	if err := cmd.Wait(); err != nil && role == "client" {
		t.Fatalf("openssl: %v", err)
	}
	tx, rx := hex.EncodeToString(rec.tx.Bytes()), hex.EncodeToString(rec.rx.Bytes())
	if role == "client" {
		tr.ClientToServer, tr.ServerToClient = tx, rx
	} else {
		tr.ClientToServer, tr.ServerToClient = rx, tx
	}
	kl, err := os.ReadFile(keylog)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(kl), "\n") {
		if strings.HasPrefix(line, "CLIENT_RANDOM ") {
			tr.OpenSSLKeyLog = line
		}
	}
	if tr.OpenSSLKeyLog == "" {
		t.Fatalf("no CLIENT_RANDOM line in OpenSSL's key log %q", kl)
	}
	return tr
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// dialRetry connects once s_server listens (a refused dial does not use
// up its -naccept 1).
func dialRetry(t *testing.T, ctx context.Context, addr string) net.Conn {
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			return c
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dial %s: %v", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checkTranscriptKeys re-derives the key schedule from the recorded bytes
// alone: the master secret must equal OpenSSL's key log, the key block must
// open both Finished records, and their verify_data must be ours.
func checkTranscriptKeys(t *testing.T, tr *transcript) {
	id, err := hexUint16(tr.Suite)
	if err != nil {
		t.Fatal(err)
	}
	s := suiteByID(id)
	c2s, err := splitRecords(mustHex(tr.ClientToServer))
	if err != nil {
		t.Fatal(err)
	}
	s2c, err := splitRecords(mustHex(tr.ServerToClient))
	if err != nil {
		t.Fatal(err)
	}
	// Plaintext handshake messages before each side's ChangeCipherSpec.
	cMsgs, cFin := plainFlight(c2s)
	sMsgs, sFin := plainFlight(s2c)
	if cFin == nil || sFin == nil {
		t.Fatal("transcript lacks a Finished record")
	}
	var ch clientHelloMsg
	var sh serverHelloMsg
	if len(cMsgs) < 2 || !ch.unmarshal(cMsgs[0]) || len(sMsgs) < 2 || !sh.unmarshal(sMsgs[0]) {
		t.Fatal("cannot parse the hellos")
	}
	if sh.cipherSuite != id {
		t.Fatalf("ServerHello suite %04x", sh.cipherSuite)
	}
	// RFC 5246 order: ClientHello, server flight, ClientKeyExchange.
	hsMsgs := slices.Concat(cMsgs[:1], sMsgs, cMsgs[1:])
	transcript := bytes.Join(hsMsgs, nil)
	pms := pskPremaster(mustHex(tr.PSK))
	var master []byte
	if sh.extendedMasterSecret {
		master = extendedMasterSecret(s, pms, transcriptHash(s, transcript))
	} else {
		master = masterSecret(s, pms, ch.random, sh.random)
	}
	want := "CLIENT_RANDOM " + hex.EncodeToString(ch.random) + " " + hex.EncodeToString(master)
	if tr.OpenSSLKeyLog != want {
		t.Fatalf("master secret differs from OpenSSL's:\n got %s\nwant %s", want, tr.OpenSSLKeyLog)
	}
	client, server := s.newCiphers(keyBlock(s, master, ch.random, sh.random))
	cf, err := client.open(nil, 0, recordTypeHandshake, bytes.Clone(cFin))
	if err != nil {
		t.Fatalf("client Finished does not open: %v", err)
	}
	if !bytes.Equal(cf, (&finishedMsg{verifyData: finishedData(s, master, labelClientFinished, transcript)}).marshal()) {
		t.Errorf("client Finished %x", cf)
	}
	transcript = append(transcript, cf...)
	sf, err := server.open(nil, 0, recordTypeHandshake, bytes.Clone(sFin))
	if err != nil {
		t.Fatalf("server Finished does not open: %v", err)
	}
	if !bytes.Equal(sf, (&finishedMsg{verifyData: finishedData(s, master, labelServerFinished, transcript)}).marshal()) {
		t.Errorf("server Finished %x", sf)
	}
}

type rawRecord struct {
	typ     uint8
	payload []byte
}

func splitRecords(b []byte) ([]rawRecord, error) {
	var out []rawRecord
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		typ, payload, err := readRecordRaw(r)
		if err != nil {
			return nil, err
		}
		out = append(out, rawRecord{typ, payload})
	}
	return out, nil
}

// plainFlight returns the handshake messages sent in the clear and the
// first record after ChangeCipherSpec (the encrypted Finished).
func plainFlight(recs []rawRecord) (msgs [][]byte, finished []byte) {
	var hand []byte
	for i, r := range recs {
		switch r.typ {
		case recordTypeHandshake:
			hand = append(hand, r.payload...)
		case recordTypeChangeCipherSpec:
			for len(hand) >= 4 {
				n := 4 + handshakeBodyLen(hand)
				msgs = append(msgs, hand[:n])
				hand = hand[n:]
			}
			if i+1 < len(recs) {
				finished = recs[i+1].payload
			}
			return msgs, finished
		}
	}
	return msgs, nil
}
