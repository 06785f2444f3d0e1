package tlspsk_test

import (
	"context"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"

	goiostlspsk "github.com/danielpaulus/go-ios/ios/tunnel/tlspsk"

	"github.com/iosmux/iosmux/tlspsk"
)

// TestServerAgainstGoIOS: go-ios v1.3.2's own TLS-PSK client (0x00A9 only,
// no extensions, the shape the iPhone tunnel sees from go-ios) against our
// server, 16 MiB each way.
func TestServerAgainstGoIOS(t *testing.T) {
	const n = 16 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type dialed struct {
		c   net.Conn
		err error
	}
	clientc := make(chan dialed, 1)
	go func() {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			clientc <- dialed{nil, err}
			return
		}
		raw.SetDeadline(time.Now().Add(60 * time.Second))
		c, err := goiostlspsk.Client(raw, psk)
		if err != nil {
			raw.Close()
		}
		clientc <- dialed{c, err}
	}()
	raw := accept(t, ctx, ln)
	s := tlspsk.Server(raw, &tlspsk.Config{PSK: psk})
	defer s.Close()
	s.SetDeadline(time.Now().Add(60 * time.Second))
	if err := s.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	d := <-clientc
	if d.err != nil {
		t.Fatalf("go-ios client: %v", d.err)
	}
	defer d.c.Close()
	if st := s.ConnectionState(); st.CipherSuite != tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384 || st.ExtendedMasterSecret {
		t.Fatalf("state %+v", st)
	}

	sum := func(r io.Reader) ([32]byte, error) {
		h := sha256.New()
		_, err := io.Copy(h, r)
		return [32]byte(h.Sum(nil)), err
	}
	type res struct {
		sum [32]byte
		err error
	}
	results := make([]chan res, 4)
	for i := range results {
		results[i] = make(chan res, 1)
	}
	go func() { s1, e := sum(io.TeeReader(stream(3, n), writerOnly{s})); results[0] <- res{s1, e} }()
	go func() { s1, e := sum(io.TeeReader(stream(4, n), writerOnly{d.c})); results[1] <- res{s1, e} }()
	go func() { s1, e := sum(io.LimitReader(d.c, n)); results[2] <- res{s1, e} }()
	go func() { s1, e := sum(io.LimitReader(s, n)); results[3] <- res{s1, e} }()
	var got [4]res
	for i := range results {
		got[i] = <-results[i]
		if got[i].err != nil {
			t.Fatalf("stream %d: %v", i, got[i].err)
		}
	}
	if got[0].sum != got[2].sum {
		t.Error("go-ios received different bytes from those our server sent")
	}
	if got[1].sum != got[3].sum {
		t.Error("our server received different bytes from those go-ios sent")
	}
}

// writerOnly hides ReadFrom and the like so TeeReader writes plainly.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }
