// Package tlspsk_test runs tlspsk against the openssl binary: our client
// against `openssl s_server`, our server against `openssl s_client`, for
// every suite, 64 MiB each way, and a wrong PSK in both directions. A
// missing openssl fails the tests.
package tlspsk_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tlspsk"
)

// bulk is what moves each way per suite.
const bulk = 64 << 20

var psk = mustHex("e258c6b77a1f2ebca2250180837dd7f8a9c24ca4e31c3c4088e20a57b18f9c71")

var suites = []struct {
	id      uint16
	openssl string
}{
	{tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384, "PSK-AES256-GCM-SHA384"},
	{tlspsk.TLS_PSK_WITH_AES_128_GCM_SHA256, "PSK-AES128-GCM-SHA256"},
	{tlspsk.TLS_PSK_WITH_AES_256_CBC_SHA384, "PSK-AES256-CBC-SHA384"},
	{tlspsk.TLS_PSK_WITH_AES_128_CBC_SHA, "PSK-AES128-CBC-SHA"},
	{tlspsk.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, "PSK-CHACHA20-POLY1305"},
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// peer is a running openssl process with its stdio.
type peer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.Reader
	stderr *testkit.Buffer
}

// startOpenSSL starts openssl with args; it is killed when the test ends.
func startOpenSSL(t *testing.T, ctx context.Context, args ...string) *peer {
	t.Helper()
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.WaitDelay = 2 * time.Second
	p := &peer{cmd: cmd, stderr: &testkit.Buffer{}}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if p.stdout, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting openssl (it must be installed): %v", err)
	}
	t.Cleanup(func() {
		p.stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("openssl %s\nstderr:\n%s", strings.Join(args, " "), p.stderr.String())
		}
	})
	return p
}

// wait waits for openssl to exit, bounded by ctx (CommandContext kills it).
func (p *peer) wait() error {
	p.stdin.Close()
	return p.cmd.Wait()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// dialServer connects once s_server listens; a refused dial does not count
// against its -naccept 1.
func dialServer(t *testing.T, ctx context.Context, addr string, p *peer) net.Conn {
	t.Helper()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c
		}
		if p.cmd.ProcessState != nil || ctx.Err() != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dial %s: %v", addr, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stream is a deterministic pseudo-random byte source of n bytes.
func stream(seed byte, n int64) io.Reader {
	var s [32]byte
	s[0] = seed
	return io.LimitReader(mrand.NewChaCha8(s), n)
}

// pump moves bulk bytes each way between our conn and openssl's stdio at
// once and compares SHA-256 of what was sent with what arrived.
func pump(t *testing.T, c net.Conn, p *peer) {
	t.Helper()
	type result struct {
		name string
		sum  [32]byte
		err  error
	}
	results := make(chan result, 4)
	hashCopy := func(name string, dst io.Writer, src io.Reader) {
		h := sha256.New()
		buf := make([]byte, 256<<10)
		_, err := io.CopyBuffer(io.MultiWriter(dst, h), src, buf)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		results <- result{name, sum, err}
	}
	go hashCopy("ours sent", c, stream(1, bulk))
	go hashCopy("openssl sent", p.stdin, stream(2, bulk))
	go hashCopy("openssl got", io.Discard, io.LimitReader(p.stdout, bulk))
	go hashCopy("ours got", io.Discard, io.LimitReader(c, bulk))
	sums := map[string][32]byte{}
	for range 4 {
		r := <-results
		if r.err != nil {
			t.Fatalf("%s: %v", r.name, r.err)
		}
		sums[r.name] = r.sum
	}
	if sums["ours sent"] != sums["openssl got"] {
		t.Error("openssl received different bytes from those tlspsk sent")
	}
	if sums["openssl sent"] != sums["ours got"] {
		t.Error("tlspsk received different bytes from those openssl sent")
	}
}

func TestClientAgainstSServer(t *testing.T) {
	type variant struct {
		name string
		id   uint16
		ossl string
		ems  bool   // our client offers extended master secret
		hint string // s_server -psk_hint
	}
	var vs []variant
	for _, s := range suites {
		vs = append(vs, variant{s.openssl, s.id, s.openssl, false, ""})
	}
	// tlspsk's client offers no extensions by default (tlspsk.md §2); once
	// with EMS and an identity hint, to cover those paths against OpenSSL.
	vs = append(vs, variant{"PSK-AES256-GCM-SHA384/ems+hint", suites[0].id, suites[0].openssl, true, "iosmux-hint"})
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			addr := freePort(t)
			args := []string{"s_server", "-nocert", "-psk", hex.EncodeToString(psk), "-psk_identity", "",
				"-tls1_2", "-cipher", v.ossl, "-accept", addr, "-naccept", "1", "-quiet"}
			if v.hint != "" {
				args = append(args, "-psk_hint", v.hint)
			}
			p := startOpenSSL(t, ctx, args...)
			raw := dialServer(t, ctx, addr, p)
			c := tlspsk.Client(raw, &tlspsk.Config{PSK: psk, CipherSuites: []uint16{v.id}, ExtendedMasterSecret: v.ems})
			defer c.Close()
			if dl, ok := ctx.Deadline(); ok {
				c.SetDeadline(dl)
			}
			if err := c.HandshakeContext(ctx); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			st := c.ConnectionState()
			if st.CipherSuite != v.id || st.ExtendedMasterSecret != v.ems || st.SecureRenegotiation != v.ems || st.IdentityHint != v.hint {
				t.Fatalf("negotiated %s, EMS %v, RI %v, hint %q", tlspsk.CipherSuiteName(st.CipherSuite), st.ExtendedMasterSecret, st.SecureRenegotiation, st.IdentityHint)
			}
			pump(t, c, p)
			// close_notify ends s_server's session; with -naccept 1 it exits.
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.wait(); err != nil {
				t.Fatalf("openssl s_server: %v", err)
			}
		})
	}
}

func TestServerAgainstSClient(t *testing.T) {
	for _, s := range suites {
		t.Run(s.openssl, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			p, raw := sClient(t, ctx, psk, "-tls1_2", "-cipher", s.openssl, "-quiet")
			c := tlspsk.Server(raw, &tlspsk.Config{PSK: psk})
			defer c.Close()
			if dl, ok := ctx.Deadline(); ok {
				c.SetDeadline(dl)
			}
			if err := c.HandshakeContext(ctx); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			st := c.ConnectionState()
			if st.CipherSuite != s.id || !st.ExtendedMasterSecret || !st.SecureRenegotiation || st.Identity != "" {
				t.Fatalf("state %+v; want %s with EMS and RI (OpenSSL offers both), empty identity", st, s.openssl)
			}
			pump(t, c, p)
			// close_notify makes s_client exit.
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.wait(); err != nil {
				t.Fatalf("openssl s_client: %v", err)
			}
		})
	}
}

func accept(t *testing.T, ctx context.Context, ln net.Listener) net.Conn {
	t.Helper()
	if dl, ok := ctx.Deadline(); ok {
		ln.(*net.TCPListener).SetDeadline(dl)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	return c
}

// sClient starts openssl s_client with PSK key and args against a
// listener of ours and returns it with the connection it made.
func sClient(t *testing.T, ctx context.Context, key []byte, args ...string) (*peer, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := startOpenSSL(t, ctx, append([]string{"s_client", "-connect", ln.Addr().String(), "-psk", hex.EncodeToString(key), "-psk_identity", ""}, args...)...)
	return p, accept(t, ctx, ln)
}

// TestWrongPSK: each side fails with bad_record_mac. OpenSSL's server is
// first to open the client's Finished and sends the alert to our client;
// our server is first against OpenSSL's client and sends it. The handshake
// is bounded by one second.
func TestWrongPSK(t *testing.T) {
	wrong := bytes.Repeat([]byte{0x42}, 32)
	for _, s := range suites {
		t.Run("client/"+s.openssl, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			addr := freePort(t)
			p := startOpenSSL(t, ctx, "s_server", "-nocert", "-psk", hex.EncodeToString(psk), "-psk_identity", "",
				"-tls1_2", "-cipher", s.openssl, "-accept", addr, "-naccept", "1")
			raw := dialServer(t, ctx, addr, p)
			c := tlspsk.Client(raw, &tlspsk.Config{PSK: wrong, CipherSuites: []uint16{s.id}})
			defer c.Close()
			hctx, hcancel := context.WithTimeout(ctx, time.Second)
			defer hcancel()
			err := c.HandshakeContext(hctx)
			var ae *tlspsk.AlertError
			if !errors.As(err, &ae) || ae.Alert != tlspsk.AlertBadRecordMAC || !ae.Remote {
				t.Fatalf("got %v, want a bad_record_mac alert from openssl", err)
			}
			c.Close()
			p.wait()
			if out := p.stderr.String(); !strings.Contains(out, "bad record mac") {
				t.Errorf("s_server did not report a bad record MAC:\n%s", out)
			}
		})
		t.Run("server/"+s.openssl, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, raw := sClient(t, ctx, wrong, "-tls1_2", "-cipher", s.openssl)
			c := tlspsk.Server(raw, &tlspsk.Config{PSK: psk})
			defer c.Close()
			hctx, hcancel := context.WithTimeout(ctx, time.Second)
			defer hcancel()
			err := c.HandshakeContext(hctx)
			var ae *tlspsk.AlertError
			if !errors.As(err, &ae) || ae.Alert != tlspsk.AlertBadRecordMAC || ae.Remote || !errors.Is(err, tlspsk.ErrBadRecordMAC) {
				t.Fatalf("got %v, want a local bad_record_mac", err)
			}
			c.Close()
			// s_client must have received our alert and failed.
			werr := p.wait()
			out := p.stderr.String()
			if werr == nil {
				t.Errorf("s_client exited 0 after a failed handshake")
			}
			if !strings.Contains(out, "alert bad record mac") {
				t.Errorf("s_client did not report our bad_record_mac alert:\n%s", out)
			}
		})
	}
}

// TestOldVersionsRefused: OpenSSL pinned to TLS 1.0 or 1.1 meets a
// protocol_version alert from our server; an s_server pinned so answers our
// client's TLS 1.2 hello with an older ServerHello, which our client
// refuses with the same alert. (OpenSSL 3 needs security level 0 for these
// versions.)
func TestOldVersionsRefused(t *testing.T) {
	for _, v := range []string{"-tls1", "-tls1_1"} {
		t.Run("server/"+v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, raw := sClient(t, ctx, psk, v, "-cipher", "PSK-AES128-CBC-SHA:@SECLEVEL=0")
			c := tlspsk.Server(raw, &tlspsk.Config{PSK: psk})
			defer c.Close()
			hctx, hcancel := context.WithTimeout(ctx, time.Second)
			defer hcancel()
			err := c.HandshakeContext(hctx)
			if !errors.Is(err, &tlspsk.AlertError{Alert: tlspsk.AlertProtocolVersion}) {
				t.Fatalf("got %v, want a local protocol_version alert", err)
			}
			c.Close()
			p.wait()
			if out := p.stderr.String(); !strings.Contains(out, "alert protocol version") {
				t.Errorf("s_client did not report our protocol_version alert:\n%s", out)
			}
		})
		t.Run("client/"+v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			addr := freePort(t)
			p := startOpenSSL(t, ctx, "s_server", "-nocert", "-psk", hex.EncodeToString(psk), "-psk_identity", "",
				v, "-cipher", "PSK-AES128-CBC-SHA:@SECLEVEL=0", "-accept", addr, "-naccept", "1")
			raw := dialServer(t, ctx, addr, p)
			c := tlspsk.Client(raw, &tlspsk.Config{PSK: psk})
			defer c.Close()
			hctx, hcancel := context.WithTimeout(ctx, time.Second)
			defer hcancel()
			if err := c.HandshakeContext(hctx); !errors.Is(err, &tlspsk.AlertError{Alert: tlspsk.AlertProtocolVersion}) {
				t.Fatalf("got %v, want a local protocol_version alert", err)
			}
			c.Close()
			p.wait()
			if out := p.stderr.String(); !strings.Contains(out, "alert protocol version") {
				t.Errorf("s_server did not report our protocol_version alert:\n%s", out)
			}
		})
	}
}

// TestRenegotiationRefused: OpenSSL asks to renegotiate (s_server's "r"
// command sends HelloRequest, s_client's "R" sends a new ClientHello); we
// answer with a no_renegotiation warning, which OpenSSL turns into a fatal
// handshake_failure (ssl3_read_bytes: "no renegotiation").
func TestRenegotiationRefused(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		addr := freePort(t)
		p := startOpenSSL(t, ctx, "s_server", "-nocert", "-psk", hex.EncodeToString(psk), "-psk_identity", "",
			"-tls1_2", "-cipher", "PSK-AES256-GCM-SHA384", "-accept", addr, "-naccept", "1")
		go io.Copy(io.Discard, p.stdout)
		raw := dialServer(t, ctx, addr, p)
		c := tlspsk.Client(raw, &tlspsk.Config{PSK: psk, ExtendedMasterSecret: true})
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.HandshakeContext(ctx); err != nil {
			t.Fatal(err)
		}
		io.WriteString(p.stdin, "r\n")
		_, err := c.Read(make([]byte, 100))
		if !errors.Is(err, &tlspsk.AlertError{Alert: tlspsk.AlertHandshakeFailure, Remote: true}) {
			t.Fatalf("got %v, want handshake_failure from openssl after our no_renegotiation", err)
		}
		c.Close()
		p.wait()
		if out := p.stderr.String(); !strings.Contains(out, "no renegotiation") {
			t.Errorf("s_server did not report our refusal:\n%s", out)
		}
	})
	t.Run("server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p, raw := sClient(t, ctx, psk, "-tls1_2", "-cipher", "PSK-AES256-GCM-SHA384")
		go io.Copy(io.Discard, p.stdout)
		c := tlspsk.Server(raw, &tlspsk.Config{PSK: psk})
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.HandshakeContext(ctx); err != nil {
			t.Fatal(err)
		}
		io.WriteString(p.stdin, "R\n")
		_, err := c.Read(make([]byte, 100))
		if !errors.Is(err, &tlspsk.AlertError{Alert: tlspsk.AlertHandshakeFailure, Remote: true}) {
			t.Fatalf("got %v, want handshake_failure from openssl after our no_renegotiation", err)
		}
		c.Close()
		p.wait()
		if out := p.stderr.String(); !strings.Contains(out, "no renegotiation") {
			t.Errorf("s_client did not report our refusal:\n%s", out)
		}
	})
}

// TestDefaultOffers checks which suite the default offers and preferences
// get against OpenSSL (tlspsk.md §3.2–§3.3): tlspsk's default client
// against s_server with OpenSSL's whole PSK list (OpenSSL honours the
// client's order unless -serverpref), and pymobiledevice3's hello
// (s_client -cipher PSK, TLS 1.2) against tlspsk's default server and a
// server preferring CBC, as `iosmux sim --tls-suites cbc` does.
func TestDefaultOffers(t *testing.T) {
	t.Run("client/s_server PSK", func(t *testing.T) {
		for _, serverpref := range []bool{false, true} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			addr := freePort(t)
			args := []string{"s_server", "-nocert", "-psk", hex.EncodeToString(psk), "-psk_identity", "",
				"-tls1_2", "-cipher", "PSK", "-accept", addr, "-naccept", "1", "-quiet"}
			if serverpref {
				args = append(args, "-serverpref")
			}
			p := startOpenSSL(t, ctx, args...)
			raw := dialServer(t, ctx, addr, p)
			c := tlspsk.Client(raw, &tlspsk.Config{PSK: psk})
			if err := c.HandshakeContext(ctx); err != nil {
				t.Fatalf("handshake (serverpref %v): %v", serverpref, err)
			}
			if got := c.ConnectionState().CipherSuite; got != tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384 {
				t.Errorf("serverpref %v: negotiated %s, want TLS_PSK_WITH_AES_256_GCM_SHA384", serverpref, tlspsk.CipherSuiteName(got))
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.wait(); err != nil {
				t.Fatalf("openssl s_server: %v", err)
			}
		}
	})
	for _, tt := range []struct {
		name   string
		server []uint16
		want   uint16
	}{
		{"default server", nil, tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384},
		{"CBC-first server", []uint16{0x00AF, 0x00A9, 0x00A8, 0xCCAB, 0x008C}, tlspsk.TLS_PSK_WITH_AES_256_CBC_SHA384},
	} {
		t.Run("s_client PSK/"+tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, raw := sClient(t, ctx, psk, "-tls1_2", "-cipher", "PSK", "-quiet")
			c := tlspsk.Server(raw, &tlspsk.Config{PSK: psk, CipherSuites: tt.server})
			if err := c.HandshakeContext(ctx); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := c.ConnectionState().CipherSuite; got != tt.want {
				t.Errorf("negotiated %s, want %s", tlspsk.CipherSuiteName(got), tlspsk.CipherSuiteName(tt.want))
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.wait(); err != nil {
				t.Fatalf("openssl s_client: %v", err)
			}
		})
	}
}
