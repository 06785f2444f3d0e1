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

// batchFlushAt bounds what a batch buffers before it writes: a full TUN
// read with GSO can be 64 packets of 16 kB.
const batchFlushAt = 256 << 10

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
