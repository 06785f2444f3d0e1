package tunnel

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// The device role (tunnel.md §2.6, §11): the simulated iPhone's end of
// every tunnel. The device owns one userspace stack holding its address in a
// ULA /64; its services (the trusted RSD and the rest) listen there. Each
// transport handed to StartSession runs the CDTunnel server handshake, gets
// the next host address in the prefix, and then moves packets between the
// transport and the stack until the transport ends.
//
// Each session is a point-to-point link, as each tunnel is an interface of
// its own on a real device: what the stack sends goes back down the session
// its peer is on. That peer is usually the session's host address, but not
// always: a host whose tunnel address is still tentative (pymobiledevice3 and
// go-ios add it without IFA_F_NODAD, and Linux holds it until its address
// work runs, the moment it also sends its Router Solicitation) picks another
// of its addresses as the source of a connection opened at once, and keeps
// it for every retransmission. So the router also learns, per session, the
// other source addresses the host sent from (learnedPerSession at most).

// ServerConfig configures a Server.
type ServerConfig struct {
	// Prefix is the link prefix; the device is its ::1 and hosts get ::2,
	// ::3, …. The zero value draws a random ULA /64 (RFC 4193), as the
	// observed fdXX:XXXX:XXXX::/64 (tunnel.md §2.3).
	Prefix netip.Prefix
	// RSDPort is the serverRSDPort every response reports; required.
	RSDPort uint16
	// MTU is the largest MTU the device grants; 0 means StreamMTU. Each
	// response gives the smaller of the request and MTU: the real rule is
	// UNCONFIRMED (pmd3's sample answered 1280 to a QUIC request of 1420).
	MTU int
	// Rand draws the random prefix; nil means crypto/rand.
	Rand io.Reader
	// Faults make the device misbehave on purpose.
	Faults Faults
	// Kernel puts the device end on this host's kernel instead of a
	// userspace stack (Linux, root): the device address and every listener
	// in a network namespace of the server's own, a kernel TUN per session
	// (server_kernel_linux.go). Cheaper than gVisor by far, so a benchmark
	// measures the host rather than the device; a host that sends from
	// another address than its tunnel address is not answered there.
	Kernel bool
	// Logger receives session notes; nil discards.
	Logger *slog.Logger
}

// Server is the device side of the tunnel.
type Server struct {
	prefix netip.Prefix
	addr   netip.Addr
	mtu    int
	rsd    uint16
	faults Faults
	log    *slog.Logger
	stack  *utun.Netstack // nil with a kernel end
	kernel *kernelEnd     // ServerConfig.Kernel

	mu       sync.Mutex
	sessions map[netip.Addr]*Session
	learned  map[netip.Addr]*Session // other host source addresses, by session
	next     uint64                  // last host number handed out
	closed   bool

	unroutable atomic.Uint64

	wg        sync.WaitGroup
	stop      chan struct{}
	closeOnce sync.Once
}

// NewServer creates the device's stack and starts routing its packets.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.RSDPort == 0 {
		return nil, errors.New("tunnel: device needs an RSD port")
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = StreamMTU
	}
	if mtu < MinMTU || mtu > maxMTU-40 {
		return nil, fmt.Errorf("tunnel: device MTU %d outside [%d, %d]", mtu, MinMTU, maxMTU-40)
	}
	prefix := cfg.Prefix
	if !prefix.IsValid() {
		r := cfg.Rand
		if r == nil {
			r = rand.Reader
		}
		var a [16]byte
		a[0] = 0xfd
		if _, err := io.ReadFull(r, a[1:6]); err != nil {
			return nil, fmt.Errorf("tunnel: device prefix: %w", err)
		}
		prefix = netip.PrefixFrom(netip.AddrFrom16(a), 64)
	}
	if !prefix.Addr().Is6() || prefix.Addr().Is4In6() || prefix.Bits() > 120 {
		return nil, fmt.Errorf("tunnel: device prefix %v must be IPv6 and at most /120", prefix)
	}
	prefix = prefix.Masked()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr := prefix.Addr().Next()
	var stack *utun.Netstack
	var kernel *kernelEnd
	var err error
	if cfg.Kernel {
		kernel, err = newKernelEnd(addr)
	} else {
		stack, err = utun.NewNetstack(utun.NetstackConfig{Address: netip.PrefixFrom(addr, prefix.Bits()), MTU: mtu, VerifyChecksums: true})
	}
	if err != nil {
		return nil, err
	}
	d := &Server{
		kernel:   kernel,
		prefix:   prefix,
		addr:     addr,
		mtu:      mtu,
		rsd:      cfg.RSDPort,
		faults:   cfg.Faults,
		log:      log,
		stack:    stack,
		sessions: map[netip.Addr]*Session{},
		learned:  map[netip.Addr]*Session{},
		next:     1,
		stop:     make(chan struct{}),
	}
	if stack != nil {
		d.wg.Add(1)
		go d.route()
	}
	return d, nil
}

// Address returns the device's tunnel address (serverAddress).
func (d *Server) Address() netip.Addr { return d.addr }

// RSDPort returns the reported serverRSDPort.
func (d *Server) RSDPort() uint16 { return d.rsd }

// Stack returns the device's userspace stack, for dialing out from the
// device or listening on other addresses; nil with a kernel end.
func (d *Server) Stack() *utun.Netstack { return d.stack }

// ListenTCP listens on the device address at port (the trusted RSD, a
// service). Closing the device closes the listener.
func (d *Server) ListenTCP(port uint16) (net.Listener, error) {
	if d.kernel != nil {
		return d.kernel.listenTCP(port)
	}
	return d.stack.ListenTCP(netip.AddrPortFrom(d.addr, port))
}

// Unroutable counts packets the device's stack sent to an address no
// session owns or has sent from; they are dropped, as a router would.
func (d *Server) Unroutable() uint64 { return d.unroutable.Load() }

// Close ends every session, closes the stack with its listeners and
// connections, and waits for every goroutine. It is idempotent.
func (d *Server) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		sessions := make([]*Session, 0, len(d.sessions))
		for _, s := range d.sessions {
			// nil: an address reserved by a handshake in progress; no
			// pump yet: the session is still starting, and startSession
			// closes it once it sees d.closed.
			if s != nil && s.pump != nil {
				sessions = append(sessions, s)
			}
		}
		d.mu.Unlock()
		for _, s := range sessions {
			s.Close()
		}
		close(d.stop)
		if d.stack != nil {
			d.stack.Close()
		} else {
			d.kernel.close()
		}
	})
	d.wg.Wait()
	return nil
}

// allocate reserves the next host address.
func (d *Server) allocate() (netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return netip.Addr{}, net.ErrClosed
	}
	for a := d.addr.Next(); d.prefix.Contains(a); a = a.Next() {
		if _, used := d.sessions[a]; !used {
			d.sessions[a] = nil // reserved until the session starts
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("tunnel: device prefix %v has no free address", d.prefix)
}

// release frees a's session and what it learned.
func (d *Server) release(a netip.Addr) {
	d.mu.Lock()
	if s := d.sessions[a]; s != nil && s.tun != nil {
		for _, l := range s.tun.learned {
			if d.learned[l] == s {
				delete(d.learned, l)
			}
		}
	}
	delete(d.sessions, a)
	d.mu.Unlock()
}

// learn records that s's host sent from src, another address than its own.
// The latest session to send from an address owns it (two hosts behind
// one tunnel each could use the same one; the newer connection wins).
func (d *Server) learn(s *Session, src netip.Addr) {
	d.mu.Lock()
	if d.sessions[s.params.ClientAddress] == s {
		d.learned[src] = s
	}
	d.mu.Unlock()
}

// lookup returns the session owning dst: the session whose host address it
// is, else the one that last sent from it. Called with d.mu held.
func (d *Server) lookup(dst netip.Addr) *Session {
	if s := d.sessions[dst]; s != nil {
		return s
	}
	return d.learned[dst]
}

// StartSession runs the CDTunnel server handshake on rwc, which it owns, and
// then serves the tunnel on it in the background until rwc ends, the session
// is closed, or the device is closed. ctx bounds the handshake only.
func (d *Server) StartSession(ctx context.Context, rwc io.ReadWriteCloser) (*Session, error) {
	return d.startSession(ctx, rwc, rwc, nil)
}

// StartPacketSession is StartSession for a transport whose packets do not
// travel on the handshake's stream: QUIC, where the handshake uses the first
// bidirectional stream and every packet is one DATAGRAM (tunnel.md §3.2).
// It owns conn (closing it closes the transport) and hs; the device's
// stream faults (Boundary) do not apply, DropAbove and RateLimit do.
func (d *Server) StartPacketSession(ctx context.Context, hs io.ReadWriter, conn PacketConn) (*Session, error) {
	return d.startSession(ctx, hs, conn, conn)
}

// startSession serves one tunnel: the handshake on hs, then packets on pc,
// or, when pc is nil, on the stream hs (which is then stream).
func (d *Server) startSession(ctx context.Context, hs io.ReadWriter, closer io.Closer, pc PacketConn) (*Session, error) {
	var client netip.Addr
	_, params, err := ServerHandshake(ctx, hs, func(req Request) (Params, error) {
		a, err := d.allocate()
		if err != nil {
			return Params{}, err
		}
		client = a
		mtu := d.mtu
		if req.MTU != 0 {
			mtu = max(min(mtu, req.MTU), MinMTU)
		}
		return Params{
			ClientAddress: a,
			PrefixLen:     d.prefix.Bits(),
			MTU:           mtu,
			ServerAddress: d.addr,
			ServerRSDPort: d.rsd,
		}, nil
	})
	if err != nil {
		if client.IsValid() {
			d.release(client)
		}
		closer.Close()
		return nil, err
	}
	s := &Session{
		dev:    d,
		params: params,
		in:     make(chan *[]byte, sessionQueue),
		closed: make(chan struct{}),
	}
	var dev tun.Device
	if d.kernel != nil {
		if dev, err = d.kernel.sessionTUN(client, params.MTU); err != nil {
			d.release(client)
			closer.Close()
			return nil, err
		}
	} else {
		s.tun = &sessionTUN{s: s, self: client.As16()}
		dev = s.tun
	}
	conn := pc
	switch {
	case conn != nil:
	case d.faults.Boundary == BoundaryStream:
		conn = NewStreamConn(readWriteCloser{hs, closer}, params.MTU)
	default:
		conn = newBoundaryConn(readWriteCloser{hs, closer}, d.faults.Boundary, &s.fc)
	}
	if d.faults.DropAbove > 0 || d.faults.RateLimit > 0 {
		conn = newFaultConn(conn, d.faults, &s.fc)
	}
	// The router must know the session before its pump writes the host's
	// first packet into the stack: a SYN answered before then would be
	// dropped, and the host would wait a second for the retransmission.
	d.mu.Lock()
	d.sessions[client] = s
	d.mu.Unlock()
	pump, err := NewPump(PumpConfig{
		TUN:     dev,
		Conn:    conn,
		MTU:     params.MTU,
		Local:   d.addr,
		Peer:    client,
		NoClamp: true,
		Probe:   ProbeConfig{Disable: true},
		Logger:  d.log,
	})
	if err != nil {
		d.release(client)
		return nil, err
	}
	d.mu.Lock()
	s.pump = pump
	if d.closed {
		d.mu.Unlock()
		pump.Close()
		d.release(client)
		return nil, net.ErrClosed
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		<-pump.Done()
		d.release(client)
		d.log.Debug("tunnel: device session ended", "client", client, "err", pump.Err())
	}()
	return s, nil
}

// readWriteCloser joins a stream and its closer; WriteRecords passes
// through so TLS-PSK batching survives the join.
type readWriteCloser struct {
	io.ReadWriter
	io.Closer
}

func (c readWriteCloser) WriteRecords(bufs [][]byte) (int, error) {
	if rw, ok := c.ReadWriter.(RecordWriter); ok {
		return rw.WriteRecords(bufs)
	}
	n := 0
	for _, b := range bufs {
		m, err := c.Write(b)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// route is the device's one reader of its stack: it hands each outbound
// packet to the session owning the destination address. Packets for nobody
// are dropped, as a router would.
func (d *Server) route() {
	defer d.wg.Done()
	bufs, sizes := makeBufs(d.stack.BatchSize(), d.mtu)
	for {
		n, err := d.stack.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		for i := range n {
			pkt := bufs[i][:sizes[i]]
			if len(pkt) < ipv6HeaderLen {
				continue
			}
			dst := netip.AddrFrom16([16]byte(pkt[24:40]))
			d.mu.Lock()
			s := d.lookup(dst)
			d.mu.Unlock()
			if s == nil {
				d.unroutable.Add(1)
				continue
			}
			select {
			case s.in <- copyPacket(pkt):
			case <-s.closed:
			case <-d.stop:
				return
			}
		}
	}
}

// sessionQueue bounds the packets waiting between the router and one
// session: the router blocks (back-pressure into the stack) when it is full.
const sessionQueue = 256

var packetPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// copyPacket copies pkt into a pooled buffer.
func copyPacket(pkt []byte) *[]byte {
	b := packetPool.Get().(*[]byte)
	*b = append((*b)[:0], pkt...)
	return b
}

func putPacketBuf(b *[]byte) { packetPool.Put(b) }

// Session is one tunnel served by the device.
type Session struct {
	dev    *Server
	params Params
	pump   *Pump
	tun    *sessionTUN
	in     chan *[]byte
	fc     faultCounters

	closeOnce sync.Once
	closed    chan struct{} // closed when the session's TUN closes
}

// Params returns what the handshake told the host.
func (s *Session) Params() Params { return s.params }

// Done is closed when the session has ended and its goroutines have exited.
func (s *Session) Done() <-chan struct{} { return s.pump.Done() }

// Err returns why the session ended; nil while it runs.
func (s *Session) Err() error { return s.pump.Err() }

// Close ends the session and closes its transport; it waits for the
// session's goroutines and is idempotent.
func (s *Session) Close() error { return s.pump.Close() }

// SessionStats counts a session's traffic and the faults it applied.
type SessionStats struct {
	Stats
	// DroppedAbove counts host→device packets dropped by Faults.DropAbove.
	DroppedAbove uint64
	// BoundaryViolations counts transport reads that were not exactly one
	// packet (Faults.Boundary).
	BoundaryViolations uint64
}

// Stats returns the session's counters. Sent is device→host.
func (s *Session) Stats() SessionStats {
	return SessionStats{
		Stats:              s.pump.Stats(),
		DroppedAbove:       s.fc.dropped.Load(),
		BoundaryViolations: s.fc.boundaries.Load(),
	}
}

// learnedPerSession bounds the source addresses one session's host can
// make the router learn (a host has a few; a spoofing one gets no more).
const learnedPerSession = 16

// sessionTUN is the session's view of the device stack as a tun.Device: it
// reads the packets the router hands it and writes straight into the stack.
type sessionTUN struct {
	s    *Session
	self [16]byte // the host's tunnel address
	// learned holds the other source addresses the host sent from; only
	// Write (the pump's one receive loop) changes it, and release reads it
	// once the pump has ended.
	learned []netip.Addr
}

func (t *sessionTUN) File() *os.File           { return nil }
func (t *sessionTUN) MTU() (int, error)        { return t.s.params.MTU, nil }
func (t *sessionTUN) Name() (string, error)    { return "device-session", nil }
func (t *sessionTUN) Events() <-chan tun.Event { return nil }
func (t *sessionTUN) BatchSize() int           { return 32 }

func (t *sessionTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var pkt *[]byte
	select {
	case pkt = <-t.s.in:
	case <-t.s.closed:
		return 0, os.ErrClosed
	}
	n := 0
	for {
		if len(*pkt) <= len(bufs[n])-offset {
			sizes[n] = copy(bufs[n][offset:], *pkt)
			// The device's SYNs advertise what its tunnel interface
			// takes: the session MTU (see Write).
			clampMSS(bufs[n][offset:offset+sizes[n]], t.s.params.MTU-tcpOverhead)
			n++
		}
		putPacketBuf(pkt)
		if n == len(bufs) {
			return n, nil
		}
		select {
		case pkt = <-t.s.in:
		default:
			return n, nil
		}
	}
}

func (t *sessionTUN) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-t.s.closed:
		return 0, os.ErrClosed
	default:
	}
	// The device's stack has one MTU for every session; a real device's
	// tunnel interface has the session's. Clamping the host's SYNs keeps
	// the device's own segments within the MTU the handshake granted, and
	// Read clamps the device's SYNs so the host's stay within it too (a
	// host with a 1280-byte packet buffer, go-ios, depends on both).
	for _, b := range bufs {
		clampMSS(b[offset:], t.s.params.MTU-tcpOverhead)
		t.learn(b[offset:])
	}
	return t.s.dev.stack.Write(bufs, offset)
}

// learn makes the router send replies to pkt's source down this session
// when that source is not the host's tunnel address (see Server).
func (t *sessionTUN) learn(pkt []byte) {
	if len(pkt) < ipv6HeaderLen || pkt[0]>>4 != 6 || [16]byte(pkt[8:24]) == t.self {
		return
	}
	src := netip.AddrFrom16([16]byte(pkt[8:24]))
	if src.IsUnspecified() || src.IsMulticast() || src == t.s.dev.addr || slices.Contains(t.learned, src) ||
		len(t.learned) >= learnedPerSession {
		return
	}
	t.learned = append(t.learned, src)
	t.s.dev.learn(t.s, src)
}

func (t *sessionTUN) Close() error {
	t.s.closeOnce.Do(func() { close(t.s.closed) })
	return nil
}
