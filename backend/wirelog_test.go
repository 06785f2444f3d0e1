package backend

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// TestWireLogRotates: the log rotates at its size bound, keeps the
// configured number of old files, and every file holds whole JSON lines.
func TestWireLogRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wire.jsonl")
	l, err := OpenWireLog(WireLogConfig{Path: path, MaxSize: 4096, Backups: 2})
	if err != nil {
		t.Fatal(err)
	}
	a, b := testkit.Pipe()
	ta := l.Tap(a, "test")
	go io.Copy(io.Discard, b)
	for range 200 {
		ta.Write([]byte("not http/2, counted only"))
	}
	for range 100 {
		l.line(99, func(b []byte) []byte { return append(b, `,"note":"filler line to pass the size bound"`...) })
	}
	ta.Close()
	b.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Size() > 4096 || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %d bytes, mode %v", name, st.Size(), st.Mode().Perm())
		}
		raw, _ := os.ReadFile(name)
		for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
			if !json.Valid(line) {
				t.Errorf("%s: not JSON: %q", name, line)
			}
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("kept more than 2 rotated files")
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte(`"event":"close","sent":4800,"received":0`)) {
		t.Errorf("close line with byte counts missing from the newest file:\n%s", raw)
	}
}

// TestTapSplitReads: the parser gives the same lines whatever the read
// boundaries (one byte at a time, halves).
func TestTapSplitReads(t *testing.T) {
	_, frames := cdsFrames(t)
	stream := bytes.Join(frames, nil)
	srv, _ := rsd.NewServer(rsd.ServerConfig{Properties: rsd.ExampleProperties(), Services: rsd.ExampleServices()})
	m := xpc.Message{Flags: xpc.FlagsMsg, ID: 2, Body: srv.HandshakeBody()}
	msg, _ := m.AppendBinary(nil)
	// The Handshake split over two DATA frames on stream 1.
	for _, part := range [][]byte{msg[:1000], msg[1000:]} {
		h := []byte{byte(len(part) >> 16), byte(len(part) >> 8), byte(len(part)), 0, 0, 0, 0, 0, 1}
		stream = append(append(stream, h...), part...)
	}
	render := func(r io.Reader) string {
		var out bytes.Buffer
		l := newWireLogWriter(&out)
		l.now = func() time.Time { return time.Unix(0, 0) }
		p := newH2Parser(l, 1, "recv")
		buf := make([]byte, 700)
		for {
			n, err := r.Read(buf)
			p.feed(buf[:n])
			if err != nil {
				return out.String()
			}
		}
	}
	whole := render(bytes.NewReader(stream))
	if !strings.Contains(whole, `"MessageType":"Handshake"`) || !strings.Contains(whole, `"MessagingProtocolVersion":{"uint64":"7"}`) {
		t.Fatalf("Handshake not decoded:\n%s", whole)
	}
	for name, r := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
	} {
		if got := render(r); got != whole {
			t.Errorf("%s reads: lines differ", name)
		}
	}
}

// FuzzH2Parser: any bytes in either direction: no panic, bounded memory,
// only valid JSON lines.
func FuzzH2Parser(f *testing.F) {
	whole, _ := os.ReadFile("testdata/h2_client_init_1MiB.hex")
	seed, _ := hex.DecodeString(strings.TrimSpace(string(whole)))
	f.Add(seed, 7)
	f.Add(seed[24:], 1)
	f.Add([]byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100}, 3)
	f.Add([]byte("GET / HTTP/1.1\r\n"), 4)
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		var out bytes.Buffer
		p := newH2Parser(newWireLogWriter(&out), 1, "recv")
		chunk = max(1, chunk%64+1)
		for len(in) > 0 {
			n := min(chunk, len(in))
			p.feed(in[:n])
			in = in[n:]
			if len(p.buf) > maxTapFrame+9+len(h2Preface) {
				t.Fatalf("parser buffers %d bytes", len(p.buf))
			}
		}
		for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
			if len(line) > 0 && !json.Valid(line) {
				t.Fatalf("invalid JSON line %q", line)
			}
		}
	})
}

// TestIdentityStoreRefusesDamage: a damaged identity file is an error,
// never replaced (clients paired with it would have to pair again).
func TestIdentityStoreRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	s, err := openIdentityStore(dir, "00008120-0001", testkit.Rand(1))
	if err != nil {
		t.Fatal(err)
	}
	id := s.identity()
	if len(id.Seed) != 32 || len(id.AltIRK) != 16 || len(id.MAC) != 6 || id.MAC[0]&1 != 0 || id.Identifier != strings.ToUpper(id.Identifier) {
		t.Errorf("identity %+v", id)
	}
	path := filepath.Join(dir, identityFileName("00008120-0001"))
	if err := os.WriteFile(path, []byte(`{"identifier":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openIdentityStore(dir, "00008120-0001", testkit.Rand(2)); err == nil {
		t.Fatal("damaged identity accepted")
	}
	raw, _ := os.ReadFile(path)
	if string(raw) != `{"identifier":` {
		t.Error("damaged identity file was overwritten")
	}
	if identityFileName("../x/../y") != "backend-___x____y.json" {
		t.Errorf("identityFileName kept path characters: %s", identityFileName("../x/../y"))
	}
}
