package tunnel

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/iotest"
)

// rwc adapts a reader and writer to io.ReadWriteCloser.
type rwc struct {
	io.Reader
	io.Writer
}

func (rwc) Close() error { return nil }

// writeRecorder records each Write separately.
type writeRecorder struct {
	mu     sync.Mutex
	writes [][]byte
}

func (w *writeRecorder) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, append([]byte(nil), b...))
	return len(b), nil
}

func testPackets() [][]byte {
	return [][]byte{
		makeTCP(hostAddr, devAddr, tcpFlagSYN, mssOpt(15940), nil),
		makeTCP(devAddr, hostAddr, 0x10, nil, bytes.Repeat([]byte("a"), 15000)),
		appendEcho(nil, icmpv6EchoRequest, hostAddr, devAddr, 1, 2, probeData),
		makeTCP(devAddr, hostAddr, 0x10, nil, bytes.Repeat([]byte("b"), 1200)),
	}
}

// readAll drains c with ReadPackets, batch by batch, until an error.
func readAll(c *StreamConn, batch, size int) ([][]byte, error) {
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, tunOffset+size)
	}
	sizes := make([]int, batch)
	var out [][]byte
	for {
		n, err := c.ReadPackets(bufs, sizes, tunOffset)
		for i := range n {
			out = append(out, append([]byte(nil), bufs[i][tunOffset:tunOffset+sizes[i]]...))
		}
		if err != nil {
			return out, err
		}
	}
}

func TestStreamConnDeframes(t *testing.T) {
	pkts := testPackets()
	stream := bytes.Join(pkts, nil)
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+err": iotest.DataErrReader,
	}
	for name, wrap := range readers {
		for _, batch := range []int{1, 3, 64} {
			t.Run(name, func(t *testing.T) {
				c := NewStreamConn(rwc{wrap(bytes.NewReader(stream)), io.Discard}, StreamMTU)
				got, err := readAll(c, batch, StreamMTU)
				if !errors.Is(err, io.EOF) {
					t.Fatalf("err = %v, want EOF", err)
				}
				if len(got) != len(pkts) {
					t.Fatalf("got %d packets, want %d", len(got), len(pkts))
				}
				for i := range pkts {
					if !bytes.Equal(got[i], pkts[i]) {
						t.Fatalf("packet %d differs", i)
					}
				}
			})
		}
	}
}

func TestStreamConnDesync(t *testing.T) {
	pkts := testPackets()
	stream := append(bytes.Join(pkts[:2], nil), 0x45, 0, 0, 20)
	stream = append(stream, make([]byte, 60)...)
	c := NewStreamConn(rwc{bytes.NewReader(stream), io.Discard}, StreamMTU)
	got, err := readAll(c, 64, StreamMTU)
	if !errors.Is(err, ErrDesync) {
		t.Fatalf("err = %v, want ErrDesync", err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d packets before the garbage, want 2", len(got))
	}
}

func TestStreamConnSkipsOversize(t *testing.T) {
	pkts := testPackets()
	huge := makeTCP(devAddr, hostAddr, 0x10, nil, make([]byte, 30000))
	stream := bytes.Join([][]byte{pkts[0], huge, pkts[2]}, nil)
	for _, wrap := range []func(io.Reader) io.Reader{func(r io.Reader) io.Reader { return r }, iotest.OneByteReader} {
		c := NewStreamConn(rwc{wrap(bytes.NewReader(stream)), io.Discard}, StreamMTU)
		got, err := readAll(c, 8, StreamMTU)
		if !errors.Is(err, io.EOF) || len(got) != 2 || !bytes.Equal(got[1], pkts[2]) {
			t.Fatalf("got %d packets, err %v; want the two around the oversize one", len(got), err)
		}
		if c.Oversize() != 1 {
			t.Fatalf("Oversize = %d, want 1", c.Oversize())
		}
	}
}

func TestStreamConnCutInsidePacket(t *testing.T) {
	pkts := testPackets()
	stream := bytes.Join(pkts, nil)
	c := NewStreamConn(rwc{bytes.NewReader(stream[:len(stream)-5]), io.Discard}, StreamMTU)
	got, err := readAll(c, 64, StreamMTU)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != len(pkts)-1 {
		t.Fatalf("got %d packets, err %v; want %d and ErrUnexpectedEOF", len(got), err, len(pkts)-1)
	}
}

func TestStreamConnOneWritePerPacket(t *testing.T) {
	w := &writeRecorder{}
	c := NewStreamConn(rwc{bytes.NewReader(nil), w}, StreamMTU)
	pkts := testPackets()
	var wg sync.WaitGroup
	for _, p := range pkts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.WritePacket(p); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(w.writes) != len(pkts) {
		t.Fatalf("%d writes for %d packets", len(w.writes), len(pkts))
	}
	for _, wr := range w.writes {
		if !wellFormed(wr) {
			t.Fatalf("a write is not exactly one packet: %d bytes", len(wr))
		}
	}
}

func FuzzStreamConn(f *testing.F) {
	pkts := testPackets()
	f.Add(bytes.Join(pkts, nil), uint16(3))
	f.Add(append(pkts[2], 0x60, 0, 0, 0, 0xff, 0xff), uint16(1))
	f.Add([]byte{0x60}, uint16(64))
	f.Fuzz(func(t *testing.T, data []byte, batch uint16) {
		batch = batch%65 + 1
		c := NewStreamConn(rwc{iotest.HalfReader(bytes.NewReader(data)), io.Discard}, 2000)
		got, err := readAll(c, int(batch), 2000)
		if err == nil {
			t.Fatal("readAll ended without an error")
		}
		total := 0
		for _, p := range got {
			if !wellFormed(p) || len(p) > 2000 {
				t.Fatalf("bad packet of %d bytes returned", len(p))
			}
			total += len(p)
		}
		if total > len(data) {
			t.Fatalf("returned %d bytes from %d", total, len(data))
		}
	})
}

// recordStream hands out scripted records through ReadRecords, as TLS-PSK
// does, and counts the calls.
type recordStream struct {
	rwc
	records [][]byte
	calls   int
}

func (r *recordStream) ReadRecords(bufs [][]byte, sizes []int) (int, error) {
	r.calls++
	if len(r.records) == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(bufs) && len(r.records) > 0 && n < 3 {
		rec := r.records[0]
		m := copy(bufs[n], rec)
		if m < len(rec) {
			r.records[0] = rec[m:]
		} else {
			r.records = r.records[1:]
		}
		sizes[n] = m
		n++
	}
	return n, nil
}

func (r *recordStream) Read(p []byte) (int, error) {
	if len(r.records) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.records[0])
	if n < len(r.records[0]) {
		r.records[0] = r.records[0][n:]
	} else {
		r.records = r.records[1:]
	}
	return n, nil
}

// TestStreamConnRecords: records that are one packet each are delivered in
// batches straight from ReadRecords; an oversize one is dropped whole; the
// first record that merges two packets switches to stream framing without
// losing or reordering anything.
func TestStreamConnRecords(t *testing.T) {
	pkts := testPackets()
	t.Run("one packet per record", func(t *testing.T) {
		rs := &recordStream{records: cloneAll(pkts)}
		c := NewStreamConn(rs, 16000)
		got, err := readAll(c, 8, 16000)
		if !errors.Is(err, io.EOF) || len(got) != len(pkts) {
			t.Fatalf("got %d packets, %v", len(got), err)
		}
		for i := range pkts {
			if !bytes.Equal(got[i], pkts[i]) {
				t.Fatalf("packet %d differs", i)
			}
		}
		if c.framed || rs.calls > 3 {
			t.Fatalf("framed %v after %d calls; want record batches", c.framed, rs.calls)
		}
	})
	t.Run("oversize record dropped", func(t *testing.T) {
		rs := &recordStream{records: cloneAll(pkts)}
		c := NewStreamConn(rs, 8000) // the 15 KB packet is oversize
		got, err := readAll(c, 8, 16000)
		if !errors.Is(err, io.EOF) || len(got) != len(pkts)-1 || c.Oversize() != 1 || c.framed {
			t.Fatalf("got %d packets, %v, oversize %d, framed %v", len(got), err, c.Oversize(), c.framed)
		}
	})
	t.Run("merged record falls back to framing", func(t *testing.T) {
		merged := append(bytes.Clone(pkts[1]), pkts[2]...)
		recs := [][]byte{bytes.Clone(pkts[0]), merged, bytes.Clone(pkts[3][:100]), bytes.Clone(pkts[3][100:]), bytes.Clone(pkts[0])}
		rs := &recordStream{records: recs}
		c := NewStreamConn(rs, 16000)
		got, err := readAll(c, 8, 16000)
		want := append(cloneAll(pkts), pkts[0])
		if !errors.Is(err, io.EOF) || len(got) != len(want) {
			t.Fatalf("got %d packets, %v", len(got), err)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("packet %d differs", i)
			}
		}
		if !c.framed {
			t.Fatal("still reading records after a merged one")
		}
	})
}

func cloneAll(bs [][]byte) [][]byte {
	out := make([][]byte, len(bs))
	for i, b := range bs {
		out[i] = bytes.Clone(b)
	}
	return out
}

// FuzzStreamConnRecords cuts a byte stream into records at fuzzed places:
// reading it record by record must give exactly the packets that stream
// framing gives for the same bytes, whatever the cuts.
func FuzzStreamConnRecords(f *testing.F) {
	pkts := testPackets()
	whole := bytes.Join(pkts, nil)
	f.Add(whole, []byte{})
	f.Add(whole, []byte{byte(len(pkts[0]) % 256), 7, 200})
	f.Add(append(pkts[2], 0x60, 0, 0, 0, 0xff, 0xff), []byte{1, 2})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var recs [][]byte
		rest := data
		for _, c := range cuts {
			n := min(int(c)*8+1, len(rest))
			if n == 0 {
				break
			}
			recs = append(recs, rest[:n])
			rest = rest[n:]
		}
		if len(cuts) == 0 {
			// One record per packet where the data parses as packets.
			for len(rest) > 0 {
				n, ok := ipv6PacketLen(rest)
				if !ok || n > len(rest) {
					break
				}
				recs = append(recs, rest[:n])
				rest = rest[n:]
			}
		}
		if len(rest) > 0 {
			recs = append(recs, rest)
		}
		want, werr := readAll(NewStreamConn(rwc{bytes.NewReader(data), io.Discard}, 2000), 5, 2000)
		got, gerr := readAll(NewStreamConn(&recordStream{records: cloneAll(recs)}, 2000), 5, 2000)
		if werr == nil || gerr == nil {
			t.Fatalf("errors %v, %v", werr, gerr)
		}
		if len(got) != len(want) {
			t.Fatalf("records gave %d packets, framing %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("packet %d differs", i)
			}
		}
	})
}
