package tunnel

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// DefaultMaxSendPacket is the largest IPv6 packet the host sends to the
// device. pmd3 measured that USB CoreDeviceProxy drops host→device packets
// over 8192 bytes once traffic is sustained, while everything smaller passes
// (pymobiledevice3 remote/userspace_tunnel.py, BASE_MSS_SEED comment;
// tunnel.md §3.3). We stay a little below that bound: TCP MSS is clamped to
// DefaultMaxSendPacket-60 and other packets above it are answered with
// ICMPv6 Packet Too Big.
const DefaultMaxSendPacket = 8000

// tunOffset is the headroom left before each packet in TUN buffers: the
// Linux TUN with IFF_VNET_HDR needs 10 bytes for the virtio header.
const tunOffset = 16

// maxBadTUNReads is how many TUN read errors in a row end the pump.
const maxBadTUNReads = 100

// connBatch is how many packets are read from the transport per batch.
const connBatch = 64

// groCap is the capacity of each receive buffer past tunOffset: the largest
// packet the Linux TUN's receive offload (GRO, wireguard-go's Write) can
// build by appending later segments of a flow to the first one. It only
// coalesces into a buffer with room for the result, so buffers of MTU size
// leave every packet to the kernel on its own, with its checksum verified
// there. The price is memory: connBatch such buffers are 4 MiB per kernel
// tunnel (wireguard-go keeps 128 of them per device).
const groCap = 65535

// Coalescer is a TUN whose Write merges consecutive segments of a TCP flow
// into one larger packet when the buffers have room (utun.Kernel on Linux:
// wireguard-go's GRO through the virtio header). The pump gives such a TUN
// receive buffers of groCap.
type Coalescer interface {
	Coalesces() bool
}

// PumpConfig configures a Pump.
type PumpConfig struct {
	// TUN is the host's side: a kernel TUN or a netstack (utun). The pump
	// owns it and closes it at teardown.
	TUN tun.Device
	// Conn carries packets to and from the device. The pump owns it.
	Conn PacketConn
	// MTU is the negotiated MTU (Params.MTU): the largest packet accepted
	// from the device and the size of every packet buffer.
	MTU int
	// Local and Peer are the host and device addresses inside the tunnel
	// (Params.ClientAddress and ServerAddress); the liveness probe uses
	// them.
	Local, Peer netip.Addr
	// MaxSendPacket caps packets sent to the peer; 0 means
	// DefaultMaxSendPacket. It never exceeds MTU. TCP MSS in SYNs from the
	// peer is clamped so that our side's segments fit.
	MaxSendPacket int
	// NoClamp turns MSS clamping and Packet Too Big replies off, leaving
	// packets untouched (the device role, and tests of the device's
	// faults).
	NoClamp bool
	// Probe configures the liveness probe.
	Probe ProbeConfig
	// Logger receives debug-level notes on dropped packets; nil discards.
	Logger *slog.Logger
}

// Stats counts a pump's traffic. Sent is toward the peer, Received from it.
type Stats struct {
	SentPackets, SentBytes         uint64
	ReceivedPackets, ReceivedBytes uint64
	// NotIPv6 counts packets read from the TUN that were not IPv6 and were
	// dropped (tunnel.md §3.1).
	NotIPv6 uint64
	// TooBig counts packets above MaxSendPacket answered with Packet Too Big.
	TooBig uint64
	// Oversize counts packets from the peer longer than MTU, dropped.
	Oversize uint64
	// Clamped counts SYNs whose MSS option was lowered.
	Clamped uint64
	// TUNWriteErrors counts batches the TUN refused, TUNReadErrors reads
	// that failed without ending the pump.
	TUNWriteErrors, TUNReadErrors uint64
	// Probes and ProbeReplies count liveness echo requests and replies.
	Probes, ProbeReplies uint64
}

type stats struct {
	sentPackets, sentBytes         atomic.Uint64
	receivedPackets, receivedBytes atomic.Uint64
	notIPv6, tooBig, oversize      atomic.Uint64
	clamped, tunWriteErrors        atomic.Uint64
	tunReadErrors                  atomic.Uint64
	probes, probeReplies           atomic.Uint64
}

// ErrDead means the peer stopped answering: nothing arrived from it for
// longer than the probe timeout although it had answered probes before.
var ErrDead = errors.New("tunnel: device stopped answering")

// Pump moves packets between a TUN and a PacketConn until either side fails
// or Close is called. Each packet goes to the transport as one WritePacket;
// nothing is queued beyond the fixed batch buffers, so a slow transport
// slows the TUN reader (and the kernel or netstack then applies TCP's own
// back-pressure).
type Pump struct {
	tun     tun.Device
	conn    PacketConn
	batch   BatchWriter // conn, when it batches
	mtu     int
	maxSend int
	noClamp bool
	gro     bool // the TUN coalesces (Coalescer)
	local   netip.Addr
	peer    netip.Addr
	log     *slog.Logger

	tunWriteMu sync.Mutex   // the receive loop and Packet Too Big share the TUN
	start      time.Time    // monotonic base for lastRx
	lastRx     atomic.Int64 // time.Since(start) of the last packet from the peer
	probe      prober
	st         stats

	failOnce sync.Once
	err      error
	stop     chan struct{} // closed by fail
	done     chan struct{} // closed when every goroutine has exited
	wg       sync.WaitGroup
}

// NewPump starts moving packets. It takes ownership of cfg.TUN and cfg.Conn
// even when it fails.
func NewPump(cfg PumpConfig) (*Pump, error) {
	if cfg.TUN == nil || cfg.Conn == nil {
		closeAll(cfg.TUN, cfg.Conn)
		return nil, errors.New("tunnel: pump needs a TUN and a conn")
	}
	if cfg.MTU < MinMTU || cfg.MTU > maxMTU {
		closeAll(cfg.TUN, cfg.Conn)
		return nil, fmt.Errorf("tunnel: pump MTU %d outside [%d, %d]", cfg.MTU, MinMTU, maxMTU)
	}
	maxSend := cfg.MaxSendPacket
	if maxSend <= 0 {
		maxSend = DefaultMaxSendPacket
	}
	maxSend = max(min(maxSend, cfg.MTU), MinMTU)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pump{
		tun:     cfg.TUN,
		conn:    cfg.Conn,
		mtu:     cfg.MTU,
		maxSend: maxSend,
		noClamp: cfg.NoClamp,
		local:   cfg.Local,
		peer:    cfg.Peer,
		log:     log,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	p.batch, _ = cfg.Conn.(BatchWriter)
	if c, ok := cfg.TUN.(Coalescer); ok {
		p.gro = c.Coalesces()
	}
	p.start = time.Now()
	if err := p.probe.init(cfg.Probe, cfg.Local, cfg.Peer); err != nil {
		closeAll(cfg.TUN, cfg.Conn)
		return nil, err
	}
	p.wg.Add(2)
	go p.sendLoop()
	go p.receiveLoop()
	if p.probe.enabled {
		p.wg.Add(1)
		go p.probeLoop()
	}
	go func() {
		p.wg.Wait()
		close(p.done)
	}()
	return p, nil
}

func closeAll(t tun.Device, c PacketConn) {
	if t != nil {
		t.Close()
	}
	if c != nil {
		c.Close()
	}
}

// fail records the first error and tears both sides down, which unblocks
// every loop.
func (p *Pump) fail(err error) {
	p.failOnce.Do(func() {
		p.err = err
		close(p.stop)
		p.conn.Close()
		p.tun.Close()
	})
}

// Done is closed once the pump has stopped and every goroutine has exited.
func (p *Pump) Done() <-chan struct{} { return p.done }

// Err returns why the pump stopped: ErrDead, the transport's or the TUN's
// error, or net.ErrClosed after Close. It is nil while the pump runs.
func (p *Pump) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Close stops the pump, closes the TUN and the conn, and returns after every
// goroutine has exited. It is idempotent and safe to call concurrently.
func (p *Pump) Close() error {
	p.fail(net.ErrClosed)
	<-p.done
	return nil
}

// Stats returns the counters so far.
func (p *Pump) Stats() Stats {
	return Stats{
		SentPackets:     p.st.sentPackets.Load(),
		SentBytes:       p.st.sentBytes.Load(),
		ReceivedPackets: p.st.receivedPackets.Load(),
		ReceivedBytes:   p.st.receivedBytes.Load(),
		NotIPv6:         p.st.notIPv6.Load(),
		TooBig:          p.st.tooBig.Load(),
		Oversize:        p.st.oversize.Load(),
		Clamped:         p.st.clamped.Load(),
		TUNWriteErrors:  p.st.tunWriteErrors.Load(),
		TUNReadErrors:   p.st.tunReadErrors.Load(),
		Probes:          p.st.probes.Load(),
		ProbeReplies:    p.st.probeReplies.Load(),
	}
}

func (p *Pump) stopping() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

func makeBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, tunOffset+size)
	}
	return bufs, make([]int, n)
}

// sendLoop reads batches from the TUN and writes each packet to the conn.
func (p *Pump) sendLoop() {
	defer p.wg.Done()
	bufs, sizes := makeBufs(max(p.tun.BatchSize(), 1), p.mtu)
	// Packet Too Big replies keep the TUN's headroom too (the Linux TUN
	// writes its virtio header there).
	ptb := make([]byte, tunOffset, tunOffset+minIPv6MTUPTB)
	badReads := 0
	out := make([][]byte, 0, len(bufs))
	for {
		n, err := p.tun.Read(bufs, sizes, tunOffset)
		if err != nil && !errors.Is(err, tun.ErrTooManySegments) {
			// A closed TUN ends the pump; another error spoils one read
			// (wireguard-go rejects a packet it cannot split, say), unless
			// it keeps coming.
			badReads++
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || p.stopping() || badReads > maxBadTUNReads {
				p.fail(tunError("read", err))
				return
			}
			p.st.tunReadErrors.Add(1)
			p.log.Debug("tunnel: TUN read failed", "err", err)
			continue
		}
		badReads = 0
		out = out[:0]
		for i := range n {
			pkt := bufs[i][tunOffset : tunOffset+sizes[i]]
			if len(pkt) == 0 || pkt[0]>>4 != 6 {
				p.st.notIPv6.Add(1)
				continue
			}
			if !p.noClamp {
				// Our SYNs tell the peer how large its segments to us may
				// be: never above our MTU.
				if clampMSS(pkt, p.mtu-tcpOverhead) {
					p.st.clamped.Add(1)
				}
				if len(pkt) > p.maxSend {
					p.st.tooBig.Add(1)
					ptb = appendPacketTooBig(ptb[:tunOffset], pkt, p.maxSend)
					p.writeTUN([][]byte{ptb}, tunOffset)
					continue
				}
			}
			out = append(out, pkt)
		}
		if len(out) == 0 {
			continue
		}
		if err := p.send(out); err != nil {
			p.fail(connError("write", err))
			return
		}
		for _, pkt := range out {
			p.st.sentPackets.Add(1)
			p.st.sentBytes.Add(uint64(len(pkt)))
		}
	}
}

// send writes a batch of packets to the conn, each one unit: in one call
// when the conn batches (BatchWriter), else packet by packet.
func (p *Pump) send(pkts [][]byte) error {
	if p.batch != nil && len(pkts) > 1 {
		return p.batch.WritePackets(pkts)
	}
	for _, pkt := range pkts {
		if err := p.conn.WritePacket(pkt); err != nil {
			return err
		}
	}
	return nil
}

// receiveLoop reads batches from the conn and writes them to the TUN.
func (p *Pump) receiveLoop() {
	defer p.wg.Done()
	bufs, sizes := makeBufs(connBatch, p.mtu)
	if p.gro {
		for i := range bufs {
			bufs[i] = make([]byte, tunOffset+p.mtu, tunOffset+max(groCap, p.mtu))
		}
	}
	out := make([][]byte, 0, connBatch)
	for {
		n, err := p.conn.ReadPackets(bufs, sizes, tunOffset)
		if n > 0 {
			p.lastRx.Store(int64(time.Since(p.start)))
		}
		out = out[:0]
		for i := range n {
			pkt := bufs[i][tunOffset : tunOffset+sizes[i]]
			if len(pkt) > p.mtu {
				p.st.oversize.Add(1)
				continue
			}
			if p.probe.isReply(pkt) {
				p.st.probeReplies.Add(1)
				continue
			}
			// The peer's SYNs tell our side how large its segments may be:
			// keep them under what the device accepts.
			if !p.noClamp && clampMSS(pkt, p.maxSend-tcpOverhead) {
				p.st.clamped.Add(1)
			}
			p.st.receivedPackets.Add(1)
			p.st.receivedBytes.Add(uint64(len(pkt)))
			out = append(out, bufs[i][:tunOffset+len(pkt)])
		}
		if len(out) > 0 {
			if werr := p.writeTUN(out, tunOffset); werr != nil {
				p.fail(werr)
				return
			}
		}
		if err != nil {
			p.fail(connError("read", err))
			return
		}
	}
}

// writeTUN writes packets to the TUN. A packet the TUN refuses (a malformed
// one, say) is counted and dropped; only a closed TUN is fatal.
func (p *Pump) writeTUN(bufs [][]byte, offset int) error {
	p.tunWriteMu.Lock()
	defer p.tunWriteMu.Unlock()
	if _, err := p.tun.Write(bufs, offset); err != nil {
		if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || p.stopping() {
			return tunError("write", err)
		}
		p.st.tunWriteErrors.Add(1)
		p.log.Debug("tunnel: TUN refused packets", "err", err)
	}
	return nil
}

func tunError(op string, err error) error {
	return fmt.Errorf("tunnel: TUN %s: %w", op, err)
}

func connError(op string, err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("tunnel: device closed the transport: %w", err)
	}
	return fmt.Errorf("tunnel: transport %s: %w", op, err)
}

// randomID returns a random echo identifier.
func randomID() (uint16, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(b[:]), nil
}
