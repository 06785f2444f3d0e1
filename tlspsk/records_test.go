package tlspsk

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// countConn counts the Write calls made on it.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// packets returns n buffers of varied sizes (1 byte up to over a record)
// with distinct contents.
func packets(n int, seed byte) [][]byte {
	sizes := []int{1, 40, 1280, 1500, 8000, 16000, maxPlaintext, maxPlaintext + 7}
	bufs := make([][]byte, n)
	r := detRand(seed)
	for i := range bufs {
		bufs[i] = make([]byte, sizes[i%len(sizes)])
		r.Read(bufs[i])
	}
	return bufs
}

// TestWriteRecordsOneRecordPerBuffer: every buffer arrives in reads of its
// own (a peer reading record by record never sees two buffers merged),
// every suite, and the batch costs far fewer write calls than buffers.
func TestWriteRecordsOneRecordPerBuffer(t *testing.T) {
	for _, id := range CipherSuites() {
		t.Run(CipherSuiteName(id), func(t *testing.T) {
			a, b := tcpPipe(t)
			cc := &countConn{Conn: a}
			ccfg := clientConfig()
			ccfg.CipherSuites = []uint16{id}
			c, s := Client(cc, ccfg), Server(b, serverConfig())
			if cerr, serr := handshakePair(t, c, s); cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			bufs := packets(200, 3)
			total := 0
			for _, p := range bufs {
				total += len(p)
			}
			before := cc.count()
			errc := make(chan error, 1)
			go func() {
				n, err := c.WriteRecords(bufs)
				if err == nil && n != total {
					err = fmt.Errorf("WriteRecords = %d, want %d", n, total)
				}
				errc <- err
			}()
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			rbuf := make([]byte, 64<<10)
			for i, want := range bufs {
				// A buffer longer than a record comes in several reads,
				// each at most one record; never part of the next buffer.
				var got []byte
				for len(got) < len(want) {
					n, err := s.Read(rbuf)
					if err != nil {
						t.Fatalf("buffer %d: read: %v", i, err)
					}
					if n > maxPlaintext {
						t.Fatalf("buffer %d: one read returned %d bytes, more than a record", i, n)
					}
					got = append(got, rbuf[:n]...)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("buffer %d: got %d bytes, want %d (merged or corrupted)", i, len(got), len(want))
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			calls := cc.count() - before
			if calls >= len(bufs)/4 {
				t.Fatalf("%d buffers took %d write calls; want them batched", len(bufs), calls)
			}
			t.Logf("%d buffers (%d bytes) in %d write calls", len(bufs), total, calls)
		})
	}
}

// TestWriteRecordsSmallBatchOneCall: a batch of small packets, the tunnel's
// common case, goes out in one write call.
func TestWriteRecordsSmallBatchOneCall(t *testing.T) {
	a, b := tcpPipe(t)
	cc := &countConn{Conn: a}
	c, s := Client(cc, clientConfig()), Server(b, serverConfig())
	if cerr, serr := handshakePair(t, c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	bufs := make([][]byte, 32)
	for i := range bufs {
		bufs[i] = bytes.Repeat([]byte{byte(i)}, 60+i)
	}
	bufs[5] = nil // empty buffers send nothing
	before := cc.count()
	if _, err := c.WriteRecords(bufs); err != nil {
		t.Fatal(err)
	}
	if calls := cc.count() - before; calls != 1 {
		t.Fatalf("32 small buffers took %d write calls, want 1", calls)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	rbuf := make([]byte, 4096)
	for i, want := range bufs {
		if len(want) == 0 {
			continue
		}
		n, err := s.Read(rbuf)
		if err != nil || !bytes.Equal(rbuf[:n], want) {
			t.Fatalf("buffer %d: read %d bytes, %v", i, n, err)
		}
	}
}

// TestWriteRecordsPartial cuts a batch at chosen byte offsets: the count
// reported covers exactly the records that started going out, and the
// rest of the batch, resent, arrives intact after them.
func TestWriteRecordsPartial(t *testing.T) {
	bufs := packets(40, 9)
	total := 0
	for _, p := range bufs {
		total += len(p)
	}
	for _, cut := range []int{0, 1, 1000, 20000, 65000, 100001} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			a, b := tcpPipe(t)
			bc := &budgetConn{Conn: a, budget: -1}
			c, s := Client(bc, clientConfig()), Server(b, serverConfig())
			if cerr, serr := handshakePair(t, c, s); cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			bc.budget = cut
			n, err := c.WriteRecords(bufs)
			if !isTimeout(err) {
				t.Fatalf("WriteRecords: %d, %v; want a timeout", n, err)
			}
			if cut == 0 && n != 0 {
				t.Fatalf("nothing went out but %d bytes were reported", n)
			}
			bc.budget = -1
			// Resend what was not committed: the rest of the byte stream.
			flat := bytes.Join(bufs, nil)
			errc := make(chan error, 1)
			go func() {
				_, err := c.WriteRecords([][]byte{flat[n:]})
				errc <- err
			}()
			got := make([]byte, total)
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := readFull(s, got); err != nil || !bytes.Equal(got, flat) {
				t.Fatalf("read: %v, equal %v", err, bytes.Equal(got, flat))
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWriteRecordsAfterClose fails cleanly.
func TestWriteRecordsAfterClose(t *testing.T) {
	c, _ := newPair(t, tcpPipe, clientConfig(), serverConfig())
	c.Close()
	if _, err := c.WriteRecords([][]byte{{1}}); err == nil {
		t.Fatal("WriteRecords after Close succeeded")
	}
}

// TestReadRecordsOnePerBuffer: what WriteRecords sent as separate records
// arrives one record per buffer, several per call once buffered, every
// suite; records longer than a buffer continue in the next one.
func TestReadRecordsOnePerBuffer(t *testing.T) {
	for _, id := range CipherSuites() {
		t.Run(CipherSuiteName(id), func(t *testing.T) {
			ccfg := clientConfig()
			ccfg.CipherSuites = []uint16{id}
			c, s := newPair(t, tcpPipe, ccfg, serverConfig())
			sent := packets(300, 5)
			errc := make(chan error, 1)
			go func() {
				_, err := c.WriteRecords(sent)
				errc <- err
			}()
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			bufs := make([][]byte, 16)
			for i := range bufs {
				bufs[i] = make([]byte, maxPlaintext)
			}
			sizes := make([]int, len(bufs))
			total := 0
			for _, p := range sent {
				total += len(p)
			}
			var got [][]byte
			calls, most, read := 0, 0, 0
			for read < total {
				n, err := s.ReadRecords(bufs, sizes)
				if err != nil {
					t.Fatalf("after %d records: %v", len(got), err)
				}
				calls++
				most = max(most, n)
				for i := range n {
					got = append(got, bytes.Clone(bufs[i][:sizes[i]]))
					read += sizes[i]
				}
			}
			// Rebuild the packets: a buffer shorter than maxPlaintext ends
			// a packet unless the packet is longer than a record.
			var rebuilt [][]byte
			var cur []byte
			for _, r := range got {
				cur = append(cur, r...)
				want := sent[len(rebuilt)]
				if len(cur) == len(want) {
					if !bytes.Equal(cur, want) {
						t.Fatalf("packet %d differs", len(rebuilt))
					}
					rebuilt = append(rebuilt, cur)
					cur = nil
					if len(rebuilt) == len(sent) {
						break
					}
				} else if len(cur) > len(want) {
					t.Fatalf("packet %d: records merged (%d bytes, want %d)", len(rebuilt), len(cur), len(want))
				}
			}
			if len(rebuilt) != len(sent) {
				t.Fatalf("rebuilt %d packets of %d", len(rebuilt), len(sent))
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if most < 2 {
				t.Errorf("never more than %d record per call (%d calls)", most, calls)
			}
			t.Logf("%d records in %d calls, up to %d per call", len(got), calls, most)
		})
	}
}

// TestReadRecordsSmallBuffers: a record longer than its buffer continues
// in the next buffer; nothing is lost.
func TestReadRecordsSmallBuffers(t *testing.T) {
	c, s := newPair(t, tcpPipe, clientConfig(), serverConfig())
	msg := bytes.Repeat([]byte("0123456789"), 100)
	go c.WriteRecords([][]byte{msg, msg})
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	bufs := [][]byte{make([]byte, 300), make([]byte, 300), make([]byte, 300), make([]byte, 300), make([]byte, 300)}
	sizes := make([]int, len(bufs))
	var got []byte
	for len(got) < 2*len(msg) {
		n, err := s.ReadRecords(bufs, sizes)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			got = append(got, bufs[i][:sizes[i]]...)
		}
	}
	if !bytes.Equal(got, append(bytes.Clone(msg), msg...)) {
		t.Fatal("data differs")
	}
}

// TestReadRecordsEOF: records before a close_notify are returned, then
// io.EOF.
func TestReadRecordsEOF(t *testing.T) {
	c, s := newPair(t, tcpPipe, clientConfig(), serverConfig())
	c.WriteRecords([][]byte{[]byte("one"), []byte("two")})
	c.CloseWrite()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	bufs := [][]byte{make([]byte, 100), make([]byte, 100), make([]byte, 100)}
	sizes := make([]int, 3)
	var got []string
	for {
		n, err := s.ReadRecords(bufs, sizes)
		for i := range n {
			got = append(got, string(bufs[i][:sizes[i]]))
		}
		if err != nil {
			if err != io.EOF {
				t.Fatalf("err %v, want io.EOF", err)
			}
			break
		}
		if n == 0 {
			t.Fatal("ReadRecords returned nothing without an error")
		}
	}
	if strings.Join(got, ",") != "one,two" {
		t.Fatalf("got %q", got)
	}
}
