package tunnel

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/iosmux/iosmux/internal/pace"
)

// Faults make the simulated device behave like the real one at its worst,
// so that tests prove the host side copes (tunnel.md §3.1, §11).
type Faults struct {
	// DropAbove makes the device drop host→device packets longer than this
	// many bytes once DropAfter bytes of host→device traffic have passed.
	// pmd3 measured USB CoreDeviceProxy dropping packets over 8192 bytes
	// under sustained load (see DefaultMaxSendPacket). 0 disables.
	DropAbove int
	DropAfter int64
	// Boundary is how the device reads its transport; see BoundaryMode.
	Boundary BoundaryMode
	// RateLimit caps each direction at this many bytes per second; 0 means
	// no cap.
	RateLimit int64
}

// BoundaryMode selects how the device turns its byte stream into packets.
type BoundaryMode int

const (
	// BoundaryStream de-frames by the IPv6 header like any tolerant peer.
	BoundaryStream BoundaryMode = iota
	// BoundaryDrop treats each transport read as exactly one packet, as
	// CoreDeviceProxy's forwarder does, and drops a read holding anything
	// else (merged packets, part of a packet) whole: throughput collapses.
	BoundaryDrop
	// BoundaryBreak is BoundaryDrop, except that the first bad read ends the
	// session (pmd3 saw the tunnel die outright).
	BoundaryBreak
)

func (m BoundaryMode) String() string {
	switch m {
	case BoundaryStream:
		return "stream"
	case BoundaryDrop:
		return "drop"
	case BoundaryBreak:
		return "break"
	}
	return fmt.Sprintf("BoundaryMode(%d)", int(m))
}

// ErrMergedPackets ends a BoundaryBreak session: one transport read held
// something other than exactly one IPv6 packet.
var ErrMergedPackets = errors.New("tunnel: device read merged or partial packets")

// faultCounters are shared by a session's fault wrappers.
type faultCounters struct {
	dropped    atomic.Uint64 // DropAbove
	boundaries atomic.Uint64 // reads that were not exactly one packet
}

// boundaryConn reads one packet per transport read (BoundaryDrop,
// BoundaryBreak).
type boundaryConn struct {
	rwc  io.ReadWriteCloser
	mode BoundaryMode
	fc   *faultCounters
	buf  []byte

	wmu       sync.Mutex
	closeOnce sync.Once
}

func newBoundaryConn(rwc io.ReadWriteCloser, mode BoundaryMode, fc *faultCounters) *boundaryConn {
	// Twice the largest packet, so that a merged read is visible as such.
	return &boundaryConn{rwc: rwc, mode: mode, fc: fc, buf: make([]byte, 2*maxMTU)}
}

func (c *boundaryConn) ReadPackets(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := c.rwc.Read(c.buf)
		if n > 0 {
			pkt := c.buf[:n]
			if wellFormed(pkt) && n <= len(bufs[0])-offset {
				sizes[0] = copy(bufs[0][offset:], pkt)
				return 1, nil
			}
			c.fc.boundaries.Add(1)
			if c.mode == BoundaryBreak {
				return 0, fmt.Errorf("%w: read of %d bytes", ErrMergedPackets, n)
			}
		}
		if err != nil {
			return 0, err
		}
	}
}

func (c *boundaryConn) WritePacket(pkt []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.rwc.Write(pkt)
	return err
}

// WritePackets batches like StreamConn: the device's writes toward the
// host are not what its faults are about.
func (c *boundaryConn) WritePackets(pkts [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if rw, ok := c.rwc.(RecordWriter); ok {
		_, err := rw.WriteRecords(pkts)
		return err
	}
	for _, pkt := range pkts {
		if _, err := c.rwc.Write(pkt); err != nil {
			return err
		}
	}
	return nil
}

func (c *boundaryConn) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.rwc.Close() })
	return err
}

// faultConn applies DropAbove and RateLimit to a PacketConn.
type faultConn struct {
	PacketConn
	f      Faults
	fc     *faultCounters
	seen   atomic.Int64 // host→device bytes so far
	rx, tx *pace.Bucket // one second of burst
	closed chan struct{}
	once   sync.Once
}

func newFaultConn(c PacketConn, f Faults, fc *faultCounters) *faultConn {
	fcn := &faultConn{PacketConn: c, f: f, fc: fc, closed: make(chan struct{})}
	if f.RateLimit > 0 {
		fcn.rx = pace.New(f.RateLimit, float64(f.RateLimit))
		fcn.tx = pace.New(f.RateLimit, float64(f.RateLimit))
	}
	return fcn
}

func (c *faultConn) ReadPackets(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := c.PacketConn.ReadPackets(bufs, sizes, offset)
		kept, total := 0, 0
		for i := range n {
			size := sizes[i]
			seen := c.seen.Add(int64(size))
			if c.f.DropAbove > 0 && size > c.f.DropAbove && seen > c.f.DropAfter {
				c.fc.dropped.Add(1)
				continue
			}
			bufs[kept], bufs[i] = bufs[i], bufs[kept]
			sizes[kept] = size
			kept++
			total += size
		}
		if c.rx != nil && total > 0 {
			if !c.rx.Take(total, c.closed) {
				return 0, errTransportClosed
			}
		}
		if kept > 0 || err != nil {
			return kept, err
		}
	}
}

func (c *faultConn) WritePacket(pkt []byte) error {
	if c.tx != nil {
		if !c.tx.Take(len(pkt), c.closed) {
			return errTransportClosed
		}
	}
	return c.PacketConn.WritePacket(pkt)
}

// errTransportClosed ends a paced call when the transport closes.
var errTransportClosed = errors.New("tunnel: device transport closed")

func (c *faultConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.PacketConn.Close()
}
