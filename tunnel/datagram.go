package tunnel

import (
	"context"
	"sync"
)

// Datagrams is a transport that carries one packet per datagram: QUIC's
// DATAGRAM frames on the P2/P3 quic transport (tunnel.md §3.2). The
// establishment code adapts a QUIC connection to it.
type Datagrams interface {
	// SendDatagram sends b as one datagram. A transport that cannot
	// carry a datagram that large drops it, as a link drops what exceeds
	// its MTU, and returns nil.
	SendDatagram(b []byte) error
	// ReceiveDatagram blocks until a datagram arrives or the transport
	// ends.
	ReceiveDatagram(ctx context.Context) ([]byte, error)
	// Close ends the transport; calls in flight return an error.
	Close() error
}

// DatagramConn is a PacketConn over Datagrams: one packet per datagram.
// Datagrams that are not one well-formed IPv6 packet (the padding both
// references send first) are dropped on receipt.
type DatagramConn struct {
	d    Datagrams
	once sync.Once
}

var _ PacketConn = (*DatagramConn)(nil)

// NewDatagramConn returns a PacketConn over d; closing it closes d.
func NewDatagramConn(d Datagrams) *DatagramConn { return &DatagramConn{d: d} }

// ReadPackets reads one datagram that holds a whole IPv6 packet.
func (c *DatagramConn) ReadPackets(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		b, err := c.d.ReceiveDatagram(context.Background())
		if err != nil {
			return 0, err
		}
		if !wellFormed(b) || len(b) > len(bufs[0])-offset {
			continue
		}
		sizes[0] = copy(bufs[0][offset:], b)
		return 1, nil
	}
}

// WritePacket sends pkt as one datagram. The pump keeps packets under the
// MTU, which the establishment fits to the datagram size.
func (c *DatagramConn) WritePacket(pkt []byte) error { return c.d.SendDatagram(pkt) }

// Close closes the transport once.
func (c *DatagramConn) Close() error {
	c.once.Do(func() { c.d.Close() })
	return nil
}
