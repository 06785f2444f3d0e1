package tlspsk

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// testPSK is the session-2 pair-verify secret of the pairing vectors
// (testdata/tls_psk.json, tlspsk.md §4).
var testPSK = mustHex("e258c6b77a1f2ebca2250180837dd7f8a9c24ca4e31c3c4088e20a57b18f9c71")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// detRand is a deterministic Config.Rand for reproducible transcripts.
func detRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return mrand.NewChaCha8(s)
}

type pipeFunc func(t testing.TB) (net.Conn, net.Conn)

// memPipe is net.Pipe: unbuffered, so both sides must be read concurrently.
func memPipe(t testing.TB) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// tcpPipe is a loopback TCP connection pair (crypto/tls localPipe).
func tcpPipe(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

func clientConfig() *Config { return &Config{PSK: testPSK, Rand: detRand(1)} }
func serverConfig() *Config { return &Config{PSK: testPSK, Rand: detRand(2)} }

// handshakePair runs both handshakes concurrently, bounded by a timeout.
func handshakePair(t testing.TB, c, s *Conn) (cerr, serr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A side whose handshake fails closes its conn, as an application
	// would; otherwise the peer could wait on an unbuffered pipe forever.
	run := func(c *Conn) error {
		err := c.HandshakeContext(ctx)
		if err != nil {
			c.Close()
		}
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { serr = run(s) })
	cerr = run(c)
	wg.Wait()
	return cerr, serr
}

// newPair builds a connected client and server over pipe and completes the
// handshake.
func newPair(t testing.TB, pipe pipeFunc, ccfg, scfg *Config) (*Conn, *Conn) {
	t.Helper()
	a, b := pipe(t)
	c, s := Client(a, ccfg), Server(b, scfg)
	if cerr, serr := handshakePair(t, c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	return c, s
}

// record builds a raw record.
func record(typ uint8, vers uint16, payload []byte) []byte {
	b := []byte{typ, byte(vers >> 8), byte(vers), 0, 0}
	binary.BigEndian.PutUint16(b[3:], uint16(len(payload)))
	return append(b, payload...)
}

// readRecordRaw reads one raw record from r.
func readRecordRaw(r io.Reader) (typ uint8, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	payload = make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	_, err = io.ReadFull(r, payload)
	return hdr[0], payload, err
}

// exchange sends n pseudo-random bytes each way at once and checks them.
func exchange(t testing.TB, c, s net.Conn, n int) {
	t.Helper()
	send := func(seed byte) []byte {
		b := make([]byte, n)
		detRand(seed).Read(b)
		return b
	}
	cdata, sdata := send(10), send(11)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	copyIn := func(dst *bytes.Buffer, src net.Conn) {
		_, err := io.CopyN(dst, src, int64(n))
		errs <- err
	}
	var fromC, fromS bytes.Buffer
	wg.Go(func() { _, err := c.Write(cdata); errs <- err })
	wg.Go(func() { _, err := s.Write(sdata); errs <- err })
	wg.Go(func() { copyIn(&fromC, s) })
	wg.Go(func() { copyIn(&fromS, c) })
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
	}
	if !bytes.Equal(fromC.Bytes(), cdata) || !bytes.Equal(fromS.Bytes(), sdata) {
		t.Fatal("exchange: data differs")
	}
}

// onWire wraps a conn and records what is written to it.
type onWire struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *onWire) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(b)
	w.mu.Unlock()
	return w.Conn.Write(b)
}

func (w *onWire) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}
