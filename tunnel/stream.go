package tunnel

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// PacketConn carries whole IPv6 packets between the host and the device.
// StreamConn implements it over the byte stream of P1 and TCP+TLS-PSK; a
// QUIC connection implements it with one DATAGRAM frame per packet
// (tunnel.md §3.2).
//
// ReadPackets and WritePacket may be called concurrently with each other;
// each by one goroutine at a time. Close unblocks both, and calls in flight
// or later return an error.
type PacketConn interface {
	// ReadPackets blocks until at least one packet is available, then reads
	// up to len(bufs) packets, each into bufs[i][offset:], recording its
	// length in sizes[i]. It returns the number of packets read.
	ReadPackets(bufs [][]byte, sizes []int, offset int) (int, error)
	// WritePacket sends pkt, exactly one IPv6 packet, as one unit: one
	// transport write, one datagram. It does not keep pkt.
	WritePacket(pkt []byte) error
	Close() error
}

// BatchWriter is a PacketConn that can send several packets in one call,
// each still its own unit on the wire (one TLS record, one datagram): the
// pump hands it what one TUN read returned. Over TLS-PSK this keeps one
// record per packet, which the device's forwarder needs, with one system
// call per batch instead of per packet.
type BatchWriter interface {
	WritePackets(pkts [][]byte) error
}

// RecordWriter is the stream side of batching: a byte stream that writes
// each buffer as its own record (tlspsk.Conn.WriteRecords).
type RecordWriter interface {
	WriteRecords(bufs [][]byte) (int, error)
}

// RecordReader is the reading side: a stream that hands out its records
// one per buffer, several per call when they are already buffered
// (tlspsk.Conn.ReadRecords).
type RecordReader interface {
	ReadRecords(bufs [][]byte, sizes []int) (int, error)
}

// ErrDesync means the byte stream no longer starts with an IPv6 header where
// a packet must begin; the tunnel cannot recover its framing (go-ios treats
// this as fatal too, tunnel.md §3.1).
var ErrDesync = errors.New("tunnel: byte stream out of sync: not an IPv6 header")

// streamBufSize is the read buffer of a StreamConn: room for several
// maximal packets so that one transport read can yield a batch.
const streamBufSize = 256 << 10

// StreamConn frames IPv6 packets on a byte stream (tunnel.md §3.1): packets
// are back to back with no extra framing, each found by its header's payload
// length, and each written with exactly one Write on the stream, because the
// device's CoreDeviceProxy forwarder is read-boundary sensitive and collapses
// when packets are merged into one write.
type StreamConn struct {
	rwc       io.ReadWriteCloser
	maxPacket int

	// rr, when the stream has records (TLS-PSK), reads each record
	// straight into a packet buffer, a batch per call. The first record
	// that is not exactly one IPv6 packet (a peer that merges or splits
	// packets) turns that off for good: stream framing takes over.
	rr      RecordReader
	framed  bool
	scratch [][]byte

	rmu  sync.Mutex // serializes readers; guards the fields below
	buf  []byte
	r, w int   // unread bytes are buf[r:w]
	skip int   // bytes of an oversize packet still to discard
	rerr error // sticky read error, returned once buffered packets are out

	// wsem serializes writers so packets never interleave. It is a channel
	// rather than a mutex so that a writer stuck behind a stalled transport
	// counts as durably blocked in synctest bubbles.
	wsem chan struct{}
	werr error

	oversize atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

var _ PacketConn = (*StreamConn)(nil)

// NewStreamConn returns a PacketConn over rwc, which it owns from now on.
// Packets longer than maxPacket bytes (the negotiated MTU) are read and
// discarded whole, so the stream stays in sync; Oversize counts them.
func NewStreamConn(rwc io.ReadWriteCloser, maxPacket int) *StreamConn {
	if maxPacket <= 0 || maxPacket > maxMTU {
		maxPacket = maxMTU
	}
	c := &StreamConn{rwc: rwc, maxPacket: maxPacket, buf: make([]byte, streamBufSize), wsem: make(chan struct{}, 1)}
	c.rr, _ = rwc.(RecordReader)
	return c
}

// Oversize returns how many packets longer than maxPacket were discarded.
func (c *StreamConn) Oversize() uint64 { return c.oversize.Load() }

// ReadPackets implements PacketConn. A packet too large for its buffer is
// discarded like an oversize one.
func (c *StreamConn) ReadPackets(bufs [][]byte, sizes []int, offset int) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for c.rr != nil && !c.framed {
		n, err := c.readRecords(bufs, sizes, offset)
		if n > 0 || err != nil {
			return n, err
		}
	}
	for {
		n, err := c.parse(bufs, sizes, offset)
		if n > 0 || err != nil {
			return n, err
		}
		if c.rerr != nil {
			if c.r < c.w || c.skip > 0 {
				if errors.Is(c.rerr, io.EOF) {
					return 0, fmt.Errorf("tunnel: stream ended inside a packet: %w", io.ErrUnexpectedEOF)
				}
			}
			return 0, c.rerr
		}
		c.fill()
	}
}

// readRecords reads a batch of records, each straight into its packet
// buffer. A record that is not exactly one packet switches to framing: it
// and the rest of the batch go to the stream buffer, in order. Caller holds
// rmu.
func (c *StreamConn) readRecords(bufs [][]byte, sizes []int, offset int) (int, error) {
	c.scratch = c.scratch[:0]
	for _, b := range bufs {
		c.scratch = append(c.scratch, b[offset:])
	}
	m, err := c.rr.ReadRecords(c.scratch, sizes)
	if err != nil {
		c.rerr = err
		return 0, err
	}
	n := 0
	for i := range m {
		rec := c.scratch[i][:sizes[i]]
		if !c.framed && wellFormed(rec) {
			if len(rec) > c.maxPacket {
				c.oversize.Add(1)
				continue
			}
			if i != n {
				copy(bufs[n][offset:], rec)
			}
			sizes[n] = len(rec)
			n++
			continue
		}
		c.framed = true
		c.appendStream(rec)
	}
	return n, nil
}

// appendStream adds b to the unread stream bytes.
func (c *StreamConn) appendStream(b []byte) {
	if len(c.buf)-c.w < len(b) && c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if len(c.buf)-c.w < len(b) {
		nb := make([]byte, max(2*len(c.buf), c.w+len(b)))
		copy(nb, c.buf[:c.w])
		c.buf = nb
	}
	c.w += copy(c.buf[c.w:], b)
}

// parse moves complete packets from the buffer into bufs.
func (c *StreamConn) parse(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) {
		if c.skip > 0 {
			d := min(c.skip, c.w-c.r)
			c.r += d
			c.skip -= d
			if c.skip > 0 {
				break
			}
		}
		avail := c.w - c.r
		if avail < ipv6HeaderLen {
			break
		}
		total, ok := ipv6PacketLen(c.buf[c.r:c.w])
		if !ok {
			if n > 0 {
				break // deliver what we have; the error comes next call
			}
			return 0, fmt.Errorf("%w (first byte %#02x)", ErrDesync, c.buf[c.r])
		}
		if total > c.maxPacket || total > len(bufs[n])-offset {
			c.oversize.Add(1)
			c.skip = total
			continue
		}
		if avail < total {
			break
		}
		sizes[n] = copy(bufs[n][offset:], c.buf[c.r:c.r+total])
		c.r += total
		n++
	}
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	return n, nil
}

// fill reads once from the stream, first making room for a whole packet.
func (c *StreamConn) fill() {
	if c.r > 0 && len(c.buf)-c.w < c.maxPacket {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	m, err := c.rwc.Read(c.buf[c.w:])
	c.w += m
	if err != nil {
		c.rerr = err
	}
}

// WritePacket implements PacketConn with one Write of pkt on the stream.
// Concurrent callers are serialized so packets never interleave.
func (c *StreamConn) WritePacket(pkt []byte) error {
	c.wsem <- struct{}{}
	defer func() { <-c.wsem }()
	if c.werr != nil {
		return c.werr
	}
	if _, err := c.rwc.Write(pkt); err != nil {
		c.werr = err
		return err
	}
	return nil
}

// WritePackets implements BatchWriter: one WriteRecords call when the
// stream has it (TLS-PSK), else one Write per packet.
func (c *StreamConn) WritePackets(pkts [][]byte) error {
	c.wsem <- struct{}{}
	defer func() { <-c.wsem }()
	if c.werr != nil {
		return c.werr
	}
	if rw, ok := c.rwc.(RecordWriter); ok {
		if _, err := rw.WriteRecords(pkts); err != nil {
			c.werr = err
			return err
		}
		return nil
	}
	for _, pkt := range pkts {
		if _, err := c.rwc.Write(pkt); err != nil {
			c.werr = err
			return err
		}
	}
	return nil
}

// Close closes the stream; it is idempotent.
func (c *StreamConn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.rwc.Close() })
	return c.closeErr
}
