package establish

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/tunnel"
)

// writeLog is the connection beneath the client's TLS: it records each
// Write (after the handshake, once armed) and can be made to fail.
type writeLog struct {
	net.Conn
	mu     sync.Mutex
	armed  bool
	writes [][]byte
	fail   error
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.fail != nil {
		err := w.fail
		w.mu.Unlock()
		return 0, err
	}
	if w.armed {
		w.writes = append(w.writes, bytes.Clone(p))
	}
	w.mu.Unlock()
	return w.Conn.Write(p)
}

func (w *writeLog) log() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

// records splits raw TLS bytes into record lengths (payload incl. AEAD
// overhead), failing on a partial record.
func records(t *testing.T, b []byte) []int {
	t.Helper()
	var lens []int
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("partial record header: %x", b)
		}
		n := int(binary.BigEndian.Uint16(b[3:5]))
		if len(b) < 5+n {
			t.Fatalf("partial record: %d of %d bytes", len(b)-5, n)
		}
		lens = append(lens, n)
		b = b[5+n:]
	}
	return lens
}

// testCert is a self-signed certificate for the device's side.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// batchPair is a client batchTLS over net.Pipe and the server's TLS; the
// server side delivers each tls.Conn.Read (one record at most) on reads.
func batchPair(t *testing.T) (*batchTLS, *writeLog, <-chan []byte) {
	t.Helper()
	cert := testCert(t)
	a, b := net.Pipe()
	wl := &writeLog{Conn: a}
	bc := &batchConn{Conn: wl}
	srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}})
	reads := make(chan []byte, 1024)
	go func() {
		defer close(reads)
		buf := make([]byte, 64<<10)
		for {
			n, err := srv.Read(buf)
			if n > 0 {
				reads <- bytes.Clone(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	tc := tls.Client(bc, &tls.Config{InsecureSkipVerify: true, DynamicRecordSizingDisabled: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close(); srv.Close() })
	wl.mu.Lock()
	wl.armed = true
	wl.mu.Unlock()
	return &batchTLS{Conn: tc, bc: bc}, wl, reads
}

func packets(sizes ...int) [][]byte {
	var pkts [][]byte
	for i, n := range sizes {
		pkts = append(pkts, bytes.Repeat([]byte{byte(i + 1)}, n))
	}
	return pkts
}

// TestBatchTLSOneWritePerBatch: a batch of packets through StreamConn's
// WritePackets goes out as one write beneath TLS holding exactly one
// record per packet, the peer reads each packet as one record, and nothing
// is held once WritePackets returns.
func TestBatchTLSOneWritePerBatch(t *testing.T) {
	c, wl, reads := batchPair(t)
	sc := tunnel.NewStreamConn(c, tunnel.StreamMTU)
	pkts := packets(1280, 16000, 40, 9000, 16000, 72)
	if err := sc.WritePackets(pkts); err != nil {
		t.Fatal(err)
	}
	c.bc.mu.Lock()
	held, batching := len(c.bc.buf), c.bc.batching
	c.bc.mu.Unlock()
	if held != 0 || batching {
		t.Fatalf("after WritePackets: %d bytes held, batching %v", held, batching)
	}
	w := wl.log()
	if len(w) != 1 {
		t.Fatalf("%d writes for a batch of %d packets, want 1", len(w), len(pkts))
	}
	if got := len(records(t, w[0])); got != len(pkts) {
		t.Fatalf("%d records for %d packets", got, len(pkts))
	}
	for i, p := range pkts {
		select {
		case got := <-reads:
			if !bytes.Equal(got, p) {
				t.Fatalf("read %d: %d bytes, want packet of %d", i, len(got), len(p))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet %d never arrived: held after the batch", i)
		}
	}
	// A single packet (WritePacket) and a write outside a batch go straight
	// through, one write each.
	if err := sc.WritePacket(pkts[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(pkts[2]); err != nil {
		t.Fatal(err)
	}
	if w := wl.log(); len(w) != 3 || len(records(t, w[1])) != 1 || len(records(t, w[2])) != 1 {
		t.Fatalf("writes outside a batch: %d, want 3 in all, one record each", len(w))
	}
	for range 2 {
		<-reads
	}
}

// TestBatchTLSBounded: a batch larger than batchFlushAt is written in
// several writes, none much above the bound, still one record per packet.
func TestBatchTLSBounded(t *testing.T) {
	c, wl, reads := batchPair(t)
	sizes := make([]int, 64)
	for i := range sizes {
		sizes[i] = 16000
	}
	pkts := packets(sizes...)
	go func() {
		for range reads {
		}
	}()
	if _, err := c.WriteRecords(pkts); err != nil {
		t.Fatal(err)
	}
	w := wl.log()
	total := 0
	for _, b := range w {
		if len(b) > batchFlushAt {
			t.Fatalf("a write of %d bytes, bound %d", len(b), batchFlushAt)
		}
		total += len(records(t, b))
	}
	if len(w) < 2 || total != len(pkts) {
		t.Fatalf("%d writes, %d records for %d packets of 16000 bytes", len(w), total, len(pkts))
	}
}

// TestBatchTLSWriteError: a failed write beneath reaches WriteRecords and
// StreamConn, and stays: later writes fail too.
func TestBatchTLSWriteError(t *testing.T) {
	c, wl, _ := batchPair(t)
	boom := errors.New("usbmuxd went away")
	wl.mu.Lock()
	wl.fail = boom
	wl.mu.Unlock()
	sc := tunnel.NewStreamConn(c, tunnel.StreamMTU)
	if err := sc.WritePackets(packets(100, 200)); !errors.Is(err, boom) {
		t.Fatalf("WritePackets: %v, want %v", err, boom)
	}
	if _, err := c.bc.Write([]byte{1}); !errors.Is(err, boom) {
		t.Fatalf("a later write: %v, want %v", err, boom)
	}
	if err := sc.WritePacket(packets(10)[0]); err == nil {
		t.Fatal("WritePacket after a failed batch succeeded")
	}
}

// TestBatchTLSCloseMidBatch: a Close during a batch (crypto/tls's
// close_notify lands in the batch's buffer) still writes what the batch
// held before it closes, and a write after Close fails.
func TestBatchTLSCloseMidBatch(t *testing.T) {
	c, wl, reads := batchPair(t)
	c.bc.begin()
	if _, err := c.Conn.Write(packets(500)[0]); err != nil {
		t.Fatal(err)
	}
	if len(wl.log()) != 0 {
		t.Fatal("a record was written mid-batch")
	}
	done := make(chan []byte, 1)
	go func() {
		got := <-reads
		done <- got
		for range reads {
		}
	}()
	c.Close()
	select {
	case got := <-done:
		if len(got) != 500 {
			t.Fatalf("peer read %d bytes, want the 500 the batch held", len(got))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the batch's record was lost on Close")
	}
	if _, err := c.bc.Write([]byte{1}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
}

// holdConn is the connection beneath the device's TLS in readPair: while
// held it gathers the TLS bytes, and release writes any prefix of them in
// one Write, so the client finds several records (or part of one) in one
// read of the connection.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  []byte
}

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	if h.hold {
		h.buf = append(h.buf, p...)
		h.mu.Unlock()
		return len(p), nil
	}
	h.mu.Unlock()
	return h.Conn.Write(p)
}

// release writes the first n held bytes (all for n < 0) with one Write in
// the background (net.Pipe waits for the reader).
func (h *holdConn) release(n int) {
	h.mu.Lock()
	if n < 0 || n > len(h.buf) {
		n = len(h.buf)
	}
	b := bytes.Clone(h.buf[:n])
	h.buf = h.buf[n:]
	h.mu.Unlock()
	go h.Conn.Write(b)
}

func (h *holdConn) held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.buf)
}

// readPair is the client's batchTLS over net.Pipe and the device's TLS
// over a holdConn, held from the end of the handshake on.
func readPair(t *testing.T) (*batchTLS, *tls.Conn, *holdConn) {
	t.Helper()
	a, b := net.Pipe()
	hc := &holdConn{Conn: b}
	bc := &batchConn{Conn: a}
	// TLS 1.2: no session tickets after the handshake, so what is held is
	// the records the test writes and nothing else.
	srv := tls.Server(hc, &tls.Config{Certificates: []tls.Certificate{testCert(t)}, MaxVersion: tls.VersionTLS12})
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	tc := tls.Client(bc, &tls.Config{InsecureSkipVerify: true, DynamicRecordSizingDisabled: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hc.mu.Lock()
	hc.hold = true
	hc.mu.Unlock()
	// The pipe first: crypto/tls's Close would wait up to 5 s to write its
	// close_notify to a pipe nobody reads.
	t.Cleanup(func() { a.Close(); b.Close(); tc.Close(); srv.Close() })
	return &batchTLS{Conn: tc, bc: bc}, srv, hc
}

// ipv6Packets are well-formed IPv6 packets of the given total sizes.
func ipv6Packets(sizes ...int) [][]byte {
	pkts := packets(sizes...)
	for _, p := range pkts {
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:6], uint16(len(p)-40))
	}
	return pkts
}

// readBatch is one StreamConn.ReadPackets into fresh buffers, bounded by
// a timeout.
func readBatch(t *testing.T, sc *tunnel.StreamConn, n int) ([][]byte, error) {
	t.Helper()
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, tunnel.StreamMTU+64)
	}
	sizes := make([]int, n)
	type res struct {
		k   int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		k, err := sc.ReadPackets(bufs, sizes, 0)
		ch <- res{k, err}
	}()
	select {
	case r := <-ch:
		var got [][]byte
		for i := range r.k {
			got = append(got, bufs[i][:sizes[i]])
		}
		return got, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("ReadPackets still waiting after 5s")
		return nil, nil
	}
}

// TestBatchTLSReadRecords: records that arrive together are read in one
// ReadPackets, one packet per buffer (before ReadRecords, one packet per
// call); one whose bytes are only partly there ends the batch without
// waiting or failing and comes whole in the next; the end of the stream
// is an error, never the internal errNotBuffered.
func TestBatchTLSReadRecords(t *testing.T) {
	c, srv, hc := readPair(t)
	sc := tunnel.NewStreamConn(c, tunnel.StreamMTU)
	pkts := ipv6Packets(1280, 16000, 60, 9000, 16000, 1500)
	for _, p := range pkts {
		if _, err := srv.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// The first five records and part of the sixth's bytes (it is longer
	// than its 1500-byte packet) at once.
	hc.release(hc.held() - 800)
	got, err := readBatch(t, sc, 16)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("one ReadPackets got %d packets of the 5 whole records there, want 5", len(got))
	}
	for i, p := range got {
		if !bytes.Equal(p, pkts[i]) {
			t.Fatalf("packet %d: %d bytes, want %d", i, len(p), len(pkts[i]))
		}
	}
	hc.release(-1)
	got, err = readBatch(t, sc, 16)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], pkts[5]) {
		t.Fatalf("the split record: %d packets, %v; want it whole", len(got), err)
	}
	// Still in step: one more record, then the device closes.
	hc.mu.Lock()
	hc.hold = false
	hc.mu.Unlock()
	go func() {
		srv.Write(pkts[2])
		srv.Close()
	}()
	got, err = readBatch(t, sc, 16)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], pkts[2]) {
		t.Fatalf("after the split record: %d packets, %v", len(got), err)
	}
	for {
		got, err = readBatch(t, sc, 16)
		if err != nil {
			break
		}
		if len(got) > 0 {
			t.Fatalf("%d packets after the last", len(got))
		}
	}
	if errors.Is(err, errNotBuffered) || !errors.Is(err, io.EOF) {
		t.Fatalf("at the end of the stream: %v, want EOF", err)
	}
}

// TestBatchTLSReadMergedRecords: a device whose records are not one packet
// each (two packets in one record, a packet split across two) still gets
// every packet through intact: StreamConn frames the stream itself from
// the first such record on, in order.
func TestBatchTLSReadMergedRecords(t *testing.T) {
	c, srv, hc := readPair(t)
	sc := tunnel.NewStreamConn(c, tunnel.StreamMTU)
	pkts := ipv6Packets(1280, 9000, 16000, 60, 1500)
	writes := [][]byte{
		pkts[0],
		append(bytes.Clone(pkts[1]), pkts[2]...),
		pkts[3][:30],
		append(bytes.Clone(pkts[3][30:]), pkts[4]...),
	}
	for _, w := range writes {
		if _, err := srv.Write(w); err != nil {
			t.Fatal(err)
		}
	}
	hc.release(-1)
	var got [][]byte
	for len(got) < len(pkts) {
		b, err := readBatch(t, sc, 16)
		if err != nil {
			t.Fatalf("after %d packets: %v", len(got), err)
		}
		for _, p := range b {
			got = append(got, bytes.Clone(p))
		}
	}
	for i, p := range pkts {
		if !bytes.Equal(got[i], p) {
			t.Fatalf("packet %d: %d bytes, want %d", i, len(got[i]), len(p))
		}
	}
}
