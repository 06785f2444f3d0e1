package establish

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/lockdown"
)

// P1's stream is crypto/tls (lockdown's service TLS), which writes each
// record with its own Write on the connection beneath it. The pump hands
// the stream a batch of packets (one TUN read) and each must stay one
// record, because the device's forwarder is read-boundary sensitive
// (tunnel.md §3.1); but the records of a batch need not cost a system call
// each. batchConn sits beneath crypto/tls and, only while batchTLS writes
// a batch, gathers the records into one buffer it writes at the batch's
// end (or when the buffer is full): the records on the wire are the same,
// in the same order, with fewer writes. Outside a batch (handshake,
// CDTunnel, single packets, alerts) every Write goes straight through.
//
// Reading is the mirror image. crypto/tls's Read hands out one record per
// call and reads the connection with a buffer about one record long, so
// StreamConn got one packet per ReadPackets, the pump wrote the TUN once
// per packet (no receive offload) and the connection was read about once
// per record. batchConn reads the connection readBufSize at a time, and
// batchTLS.ReadRecords (tunnel.RecordReader) takes one record per buffer,
// the first waiting for the network, the rest only while their bytes are
// already here: for those, batchConn's Read answers errNotBuffered, a
// temporary net.Error that crypto/tls keeps no state for, instead of
// waiting.

// batchFlushAt bounds what a batch buffers before it writes: a full TUN
// read with GSO can be 64 packets of 16 kB.
const batchFlushAt = 256 << 10

// readBufSize is how much batchConn reads from the connection at once:
// many records of a full TUN batch.
const readBufSize = 256 << 10

// closeFlushTimeout bounds the last write Close makes of records buffered
// by a batch a concurrent Close interrupted (crypto/tls's close_notify
// among them).
const closeFlushTimeout = time.Second

// batchConn is the connection beneath P1's TLS.
type batchConn struct {
	net.Conn

	mu       sync.Mutex
	batching bool
	buf      []byte
	err      error // sticky: a flush failed and records were lost

	// The reading side, used by crypto/tls's reader alone (one goroutine
	// at a time, under its input lock): rbuf[rr:rw] is read from the
	// connection and not yet handed to crypto/tls; rerr came with the last
	// bytes read and is answered once they are out; with buffered set
	// (batchTLS.ReadRecords after its first record) Read never waits.
	rbuf     []byte
	rr, rw   int
	rerr     error
	buffered bool
}

// errNotBuffered is batchConn's answer to a Read that would wait while
// only buffered bytes are wanted. crypto/tls does not record a temporary
// net.Error as the connection's error, and keeps the bytes it has.
var errNotBuffered net.Error = notBuffered{}

type notBuffered struct{}

func (notBuffered) Error() string {
	return "establish: no buffered bytes (internal to record batching)"
}
func (notBuffered) Timeout() bool   { return true }
func (notBuffered) Temporary() bool { return true }

// Read implements net.Conn from a readBufSize buffer.
func (b *batchConn) Read(p []byte) (int, error) {
	if b.rr == b.rw {
		if b.rerr != nil {
			err := b.rerr
			b.rerr = nil
			return 0, err
		}
		if b.buffered {
			return 0, errNotBuffered
		}
		if len(p) >= readBufSize {
			return b.Conn.Read(p)
		}
		if b.rbuf == nil {
			b.rbuf = make([]byte, readBufSize)
		}
		n, err := b.Conn.Read(b.rbuf)
		b.rr, b.rw = 0, n
		if n == 0 {
			return 0, err
		}
		b.rerr = err
	}
	n := copy(p, b.rbuf[b.rr:b.rw])
	b.rr += n
	return n, nil
}

// Write implements net.Conn: buffered during a batch, else straight
// through (after anything a batch buffered, so records stay in order).
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if !b.batching {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		return b.Conn.Write(p)
	}
	if len(b.buf) > 0 && len(b.buf)+len(p) > batchFlushAt {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// flushLocked writes what is buffered. Caller holds mu.
func (b *batchConn) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	b.buf = b.buf[:0]
	if err != nil {
		b.err = err
	}
	return err
}

// begin starts buffering a batch.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

// end writes the batch and stops buffering: nothing stays held.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	if b.err != nil {
		return b.err
	}
	return b.flushLocked()
}

// Close writes what a batch interrupted by this Close buffered (bounded by
// closeFlushTimeout), then closes the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	if len(b.buf) > 0 && b.err == nil {
		b.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		b.flushLocked()
	}
	b.buf = nil
	b.err = net.ErrClosed
	b.mu.Unlock()
	return b.Conn.Close()
}

// batchTLS is P1's stream: the service TLS with WriteRecords
// (tunnel.RecordWriter), one TLS record per buffer, one write per batch.
type batchTLS struct {
	*tls.Conn
	bc *batchConn
}

// WriteRecords writes each buffer as one record (one tls.Conn.Write, whose
// config disables dynamic record sizing, so a packet up to the MTU is one
// record) and the batch with one write beneath. It returns the bytes
// written, 0 when the batch's write failed.
func (c *batchTLS) WriteRecords(bufs [][]byte) (int, error) {
	c.bc.begin()
	n := 0
	var err error
	for _, b := range bufs {
		var m int
		m, err = c.Conn.Write(b)
		n += m
		if err != nil {
			break
		}
	}
	if ferr := c.bc.end(); ferr != nil {
		return 0, ferr
	}
	return n, err
}

// ReadRecords implements tunnel.RecordReader: each buffer gets what one
// crypto/tls Read returns, one record (a record longer than its buffer
// continues in the next buffer or call, so StreamConn sees a record that
// is not one packet and frames the stream itself). It waits for the first
// record only; the rest it takes while their bytes are already read
// (batchConn's buffer or crypto/tls's own). An error after the first
// record ends the batch; crypto/tls answers it again on the next call.
// Callers are serialized (StreamConn's reader).
func (c *batchTLS) ReadRecords(bufs [][]byte, sizes []int) (int, error) {
	k := 0
	for k < len(bufs) && k < len(sizes) {
		c.bc.buffered = k > 0
		n, err := c.Conn.Read(bufs[k])
		c.bc.buffered = false
		if n > 0 || len(bufs[k]) == 0 {
			sizes[k] = n
			k++
		}
		if err != nil {
			if k > 0 {
				break
			}
			return 0, err
		}
	}
	return k, nil
}

// serviceTLSBatched is lockdown.ServiceTLS for P1's service connection
// raw: its TLS over a batchConn, as batchTLS when the service speaks TLS.
func serviceTLSBatched(ctx context.Context, raw net.Conn, info lockdown.ServiceInfo, rec *lockdown.PairRecord) (net.Conn, error) {
	bc := &batchConn{Conn: raw}
	conn, err := lockdown.ServiceTLS(ctx, bc, info, rec, 0)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*tls.Conn); ok {
		return &batchTLS{Conn: tc, bc: bc}, nil
	}
	return conn, nil
}
