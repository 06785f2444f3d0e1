package utun

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Netstack defaults.
const (
	// DefaultQueueLen is the netstack's outbound packet queue. A full queue
	// drops, as a NIC would, and TCP recovers; it must hold a receive
	// window's worth of MTU-sized packets to avoid needless loss.
	DefaultQueueLen = 2048
	// DefaultTCPBuffer is the largest TCP send and receive buffer a
	// connection grows to (auto-tuned from 1 MiB). pmd3 measured that a
	// 4 MiB window gives kernel-tunnel parity on a real device
	// (remote/userspace_tunnel.py, MAX_RECV_WINDOW).
	DefaultTCPBuffer = 8 << 20
	// netstackBatch is how many packets one Read returns at most.
	netstackBatch = 64
	nicID         = 1
)

// NetstackConfig configures a userspace IPv6 stack.
type NetstackConfig struct {
	// Address is this stack's address and the on-link prefix (the tunnel's
	// ClientPrefix on the host, the device address on the simulated phone).
	Address netip.Prefix
	// MTU is the link MTU.
	MTU int
	// QueueLen is the outbound packet queue; 0 means DefaultQueueLen.
	QueueLen int
	// TCPBuffer caps TCP buffer auto-tuning; 0 means DefaultTCPBuffer.
	TCPBuffer int
	// VerifyChecksums makes the stack check the TCP and UDP checksums of
	// the packets written to it, as an iPhone's stack does: the simulated
	// device sets it, so it rejects what a real one would. The host's stack
	// leaves it off: its packets come from the device over the tunnel's
	// transport (TLS-PSK, QUIC or lockdown TLS), whose authentication
	// already guarantees they are the bytes the device's stack sent, so a
	// second pass over every byte would find nothing.
	VerifyChecksums bool
}

// Netstack is a gVisor TCP/IP stack that is also a tun.Device: packets the
// stack sends are read with Read, packets written with Write arrive at the
// stack. It replaces a kernel TUN where there is no root, and it is the
// simulated iPhone's own stack (wireguard-go's tun/netstack is the model).
//
// Read and Write may run concurrently; Close unblocks Read, which then
// returns os.ErrClosed.
type Netstack struct {
	addr   netip.Addr
	mtu    int
	ep     *channel.Endpoint
	stack  *stack.Stack
	ctx    context.Context
	cancel context.CancelFunc
	events chan tun.Event

	// writeMu keeps Close from tearing the stack down under a Write.
	writeMu sync.RWMutex
	// groMu serializes Writes through gro, which merges consecutive TCP
	// segments of a flow within one Write into one packet for the stack.
	groMu  sync.Mutex
	gro    gro.GRO
	verify bool
	// The segment a Read is cutting (Read is not concurrent): pending is
	// the packet whose rest did not fit the last Read's buffers, segOff
	// the payload bytes already cut, segData its payload's slices.
	pending   *stack.PacketBuffer
	segOff    int
	segData   [][]byte
	closeOnce sync.Once
}

var _ tun.Device = (*Netstack)(nil)

// NewNetstack creates the stack with cfg.Address assigned and routes for
// its prefix and everything else pointing at the link.
func NewNetstack(cfg NetstackConfig) (*Netstack, error) {
	if !cfg.Address.IsValid() || !cfg.Address.Addr().Is6() || cfg.Address.Addr().Is4In6() {
		return nil, fmt.Errorf("utun: netstack address %v is not an IPv6 prefix", cfg.Address)
	}
	if cfg.MTU < 1280 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("utun: netstack MTU %d outside [1280, 65535]", cfg.MTU)
	}
	qlen := cfg.QueueLen
	if qlen <= 0 {
		qlen = DefaultQueueLen
	}
	tcpBuf := cfg.TCPBuffer
	if tcpBuf <= 0 {
		tcpBuf = DefaultTCPBuffer
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol6},
		HandleLocal:        true,
	})
	ns := &Netstack{
		addr:   cfg.Address.Addr(),
		mtu:    cfg.MTU,
		ep:     channel.New(qlen, uint32(cfg.MTU), ""),
		stack:  s,
		events: make(chan tun.Event, 1),
	}
	ns.verify = cfg.VerifyChecksums
	if !cfg.VerifyChecksums {
		ns.ep.LinkEPCapabilities |= stack.CapabilityRXChecksumOffload
	}
	// GRO only where checksums are trusted: the NIC marks every packet
	// it is handed as verified or not by the endpoint's capability alone,
	// so a merged packet (whose checksum field is its first segment's)
	// would fail the TCP check that VerifyChecksums keeps.
	ns.gro.Init(!cfg.VerifyChecksums)
	if cfg.MTU >= gsoMinMTU {
		ns.ep.SupportedGSOKind = stack.HostGSOSupported
	}
	ns.ctx, ns.cancel = context.WithCancel(context.Background())
	fail := func(what string, err tcpip.Error) (*Netstack, error) {
		ns.Close()
		return nil, fmt.Errorf("utun: netstack %s: %v", what, err)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fail("enable SACK", err)
	}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: tcpBuf}
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); err != nil {
		return fail("set receive buffer", err)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: tcpBuf}
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); err != nil {
		return fail("set send buffer", err)
	}
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &moderate); err != nil {
		return fail("enable receive buffer moderation", err)
	}
	if err := s.CreateNIC(nicID, groLink{ns.ep, &ns.gro}); err != nil {
		return fail("create NIC", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol: ipv6.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpip.AddrFrom16(ns.addr.As16()),
			PrefixLen: cfg.Address.Bits(),
		},
	}
	if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return fail("add address", err)
	}
	// Everything goes out of the one link: the tunnel is point to point.
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv6EmptySubnet, NIC: nicID}})
	ns.events <- tun.EventUp
	return ns, nil
}

// ForwardTCP hands every TCP connection the stack receives, whatever its
// destination address and port, to handle (each on a goroutine of its own)
// before the handshake completes, instead of to listeners: a stack that
// terminates connections meant for other endpoints (the backend's client
// tunnels) decides per request whether to accept or refuse. maxInFlight
// bounds the handshakes under way.
func (ns *Netstack) ForwardTCP(maxInFlight int, handle func(*TCPRequest)) {
	fwd := tcp.NewForwarder(ns.stack, 0, maxInFlight, func(r *tcp.ForwarderRequest) { handle(&TCPRequest{r: r}) })
	ns.stack.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
}

// TCPRequest is a connection attempt (a SYN) a ForwardTCP handler decides
// on: Accept completes the handshake, Refuse answers with a reset. A
// handler must call one of them.
type TCPRequest struct {
	r *tcp.ForwarderRequest
}

// LocalPort is the port the peer connects to.
func (r *TCPRequest) LocalPort() uint16 { return r.r.ID().LocalPort }

// Accept completes the handshake and returns the connection.
func (r *TCPRequest) Accept() (net.Conn, error) {
	var wq waiter.Queue
	ep, terr := r.r.CreateEndpoint(&wq)
	if terr != nil {
		r.r.Complete(true)
		return nil, fmt.Errorf("utun: netstack accept: %s", terr)
	}
	r.r.Complete(false)
	return gonet.NewTCPConn(&wq, ep), nil
}

// Refuse answers the attempt with a reset.
func (r *TCPRequest) Refuse() { r.r.Complete(true) }

// Addr returns the stack's own address.
func (ns *Netstack) Addr() netip.Addr { return ns.addr }

// File implements tun.Device; a netstack has no descriptor.
func (ns *Netstack) File() *os.File { return nil }

// Name implements tun.Device.
func (ns *Netstack) Name() (string, error) { return "netstack", nil }

// MTU implements tun.Device.
func (ns *Netstack) MTU() (int, error) { return ns.mtu, nil }

// Events implements tun.Device: one EventUp, closed by Close.
func (ns *Netstack) Events() <-chan tun.Event { return ns.events }

// BatchSize implements tun.Device.
func (ns *Netstack) BatchSize() int { return netstackBatch }

// Read implements tun.Device: it blocks for the first outbound packet and
// then takes whatever else is queued, up to len(bufs). A packet larger than
// its buffer is dropped.
//
// The stack hands over TCP segments of up to gsoMaxSize (host GSO, see
// groLink): Read cuts each into segments of the connection's MSS, which
// the peer's MSS bounds (and the pump clamps to what the device accepts),
// each with its own sequence number, length and complete checksum. A
// segment too long for the rest of bufs waits for the next Read.
func (ns *Netstack) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n == 0 {
		pkt := ns.pending
		ns.pending = nil
		if pkt == nil {
			if pkt = ns.ep.ReadContext(ns.ctx); pkt == nil {
				return 0, os.ErrClosed
			}
		}
		for pkt != nil {
			if gso := pkt.GSOOptions; gso.Type == stack.GSOTCPv6 && gso.NeedsCsum {
				k, done := ns.segment(pkt, bufs[n:], sizes[n:], offset)
				n += k
				if !done {
					ns.pending = pkt // bufs are full
					break
				}
			} else if size := pkt.Size(); size <= len(bufs[n])-offset {
				at := offset
				for _, s := range pkt.AsSlices() {
					at += copy(bufs[n][at:], s)
				}
				sizes[n] = size
				n++
			}
			pkt.DecRef()
			if n == len(bufs) {
				break
			}
			pkt = ns.ep.Read()
		}
	}
	return n, nil
}

// segment writes pkt, a TCP segment the stack left to the link to cut
// (stack.GSO with NeedsCsum: its checksum field holds only the pseudo
// header's sum), as segments of gso.MSS payload bytes into bufs, from
// ns.segOff on. It reports how many it wrote and whether pkt is done.
func (ns *Netstack) segment(pkt *stack.PacketBuffer, bufs [][]byte, sizes []int, offset int) (int, bool) {
	ip := pkt.NetworkHeader().Slice()
	tcp := pkt.TransportHeader().Slice()
	hl := len(ip) + len(tcp)
	total := pkt.Data().Size()
	mss := int(pkt.GSOOptions.MSS)
	if len(ip) != header.IPv6MinimumSize || len(tcp) < header.TCPMinimumSize || (mss <= 0 && total > 0) {
		ns.segOff = 0
		return 0, true // not what gVisor's TCP builds: drop
	}
	if ns.segOff == 0 {
		// The payload's slices, once per packet (AsSlices has the headers
		// first).
		ns.segData = ns.segData[:0]
		skip := hl
		for _, s := range pkt.AsSlices() {
			if skip >= len(s) {
				skip -= len(s)
				continue
			}
			ns.segData = append(ns.segData, s[skip:])
			skip = 0
		}
	}
	src := tcpip.AddrFrom16Slice(ip[8:24])
	dst := tcpip.AddrFrom16Slice(ip[24:40])
	seq := header.TCP(tcp).SequenceNumber()
	flags := header.TCP(tcp).Flags()
	k := 0
	for k < len(bufs) {
		m := min(mss, total-ns.segOff)
		b := bufs[k][offset:]
		if len(b) < hl+m {
			ns.segOff = 0
			return k, true // cannot happen with MTU-sized buffers: drop
		}
		copy(b, ip)
		copy(b[len(ip):], tcp)
		copyAt(b[hl:hl+m], ns.segData, ns.segOff)
		header.IPv6(b).SetPayloadLength(uint16(len(tcp) + m))
		t := header.TCP(b[len(ip) : hl+m])
		t.SetSequenceNumber(seq + uint32(ns.segOff))
		f := flags
		if ns.segOff+m < total {
			f &^= header.TCPFlagPsh | header.TCPFlagFin // only on the last
		}
		if ns.segOff > 0 {
			f &^= header.TCPFlagCwr // only on the first
		}
		t.SetFlags(uint8(f))
		t.SetChecksum(0)
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(t)))
		t.SetChecksum(^checksum.Checksum(t, xsum))
		sizes[k] = hl + m
		k++
		ns.segOff += m
		if ns.segOff >= total {
			ns.segOff = 0
			return k, true
		}
	}
	return k, false
}

// copyAt fills dst from the concatenation of src starting at off.
func copyAt(dst []byte, src [][]byte, off int) {
	for _, s := range src {
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n := copy(dst, s[off:])
		dst = dst[n:]
		off = 0
		if len(dst) == 0 {
			return
		}
	}
}

// headerSplit is where Write cuts each packet in two: the IPv6 header and
// a TCP header with the largest options (40 + 60 bytes) fit in front.
const headerSplit = header.IPv6MinimumSize + header.TCPHeaderMaximumSize

// Write implements tun.Device: each packet is handed to the stack, which
// copies it. Only IPv6 is accepted.
//
// The copy is two views: the first headerSplit bytes and the rest. gVisor's
// IPv6 input clones the packet and then reads its headers, and reading a
// header out of a view that another clone shares copies that view's whole
// chunk (16 KiB for a 16000-byte packet); with the headers in a view of
// their own, only those 100 bytes are copied.
func (ns *Netstack) Write(bufs [][]byte, offset int) (int, error) {
	ns.writeMu.RLock()
	defer ns.writeMu.RUnlock()
	if ns.ctx.Err() != nil {
		return 0, os.ErrClosed
	}
	ns.groMu.Lock()
	defer ns.groMu.Unlock()
	// Whatever is merged so far goes up even when a packet is refused.
	defer ns.gro.Flush()
	for i, b := range bufs {
		pkt := b[offset:]
		if len(pkt) == 0 {
			continue
		}
		if pkt[0]>>4 != 6 {
			return i, syscall.EAFNOSUPPORT
		}
		var payload buffer.Buffer
		if len(pkt) > 2*headerSplit {
			payload = buffer.MakeWithData(pkt[:headerSplit])
			payload.Append(buffer.NewViewWithData(pkt[headerSplit:]))
		} else {
			payload = buffer.MakeWithData(pkt)
		}
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
		pb.NetworkProtocolNumber = header.IPv6ProtocolNumber
		// Trusted (see NetstackConfig.VerifyChecksums), or left to the
		// stack (gro is off then).
		pb.RXChecksumValidated = !ns.verify
		ns.gro.Enqueue(pb)
		pb.DecRef()
	}
	return len(bufs), nil
}

// Close stops the stack, aborting its connections and waiting for its
// workers, and unblocks Read. It is idempotent.
func (ns *Netstack) Close() error {
	ns.closeOnce.Do(func() {
		ns.writeMu.Lock()
		ns.cancel()
		ns.writeMu.Unlock()
		ns.stack.Close()
		ns.ep.Close()
		ns.stack.Wait()
		close(ns.events)
	})
	return nil
}

// groLink is the stack's link endpoint: the channel endpoint, and the
// stack's dispatcher handed to gro when the NIC attaches.
type groLink struct {
	*channel.Endpoint
	gro *gro.GRO
}

// gsoMinMTU is the smallest link MTU at which the stack's TCP hands Read
// segments to cut (host GSO): the byte-stream tunnels (MTU 16000), whose
// transport loses nothing. A QUIC tunnel's datagrams (MTU about 1400) can
// be lost, and gVisor resends what it sent as one segment, some 48 packets
// of a 64 KiB one, into the same datagram queue; those tunnels keep one
// segment per packet. (P2 over QUIC stalls for seconds now and then in
// TestEstablishKernel with or without GSO; nothing here changes that.)
const gsoMinMTU = 8000

// gsoMaxSize is the largest TCP segment the stack hands to Read to cut
// (the channel endpoint's own GSOMaxSize is 32 KiB).
const gsoMaxSize = 1 << 16

// GSOMaxSize implements stack.GSOEndpoint.
func (groLink) GSOMaxSize() uint32 { return gsoMaxSize }

// Attach implements stack.LinkEndpoint.
func (l groLink) Attach(d stack.NetworkDispatcher) {
	l.gro.Dispatcher = d
	l.Endpoint.Attach(d)
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	fa := tcpip.FullAddress{NIC: nicID, Port: ap.Port()}
	if ap.Addr().IsValid() && !ap.Addr().IsUnspecified() {
		fa.Addr = tcpip.AddrFrom16(ap.Addr().As16())
	}
	return fa
}

// DialTCP connects to addr through the stack. The conn supports CloseWrite.
func (ns *Netstack) DialTCP(ctx context.Context, addr netip.AddrPort) (*gonet.TCPConn, error) {
	if !addr.Addr().Is6() {
		return nil, fmt.Errorf("utun: netstack dial %v: not an IPv6 address", addr)
	}
	return gonet.DialContextTCP(ctx, ns.stack, fullAddr(addr), ipv6.ProtocolNumber)
}

// DialContext connects like net.Dialer.DialContext, for "tcp", "tcp6",
// "udp" and "udp6" with a literal IPv6 address ("[fd00::1]:58783").
func (ns *Netstack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("utun: netstack dial: %w", err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("utun: netstack dial %q: literal IPv6 address required", address)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("utun: netstack dial %q: bad port", address)
	}
	ap := netip.AddrPortFrom(ip, uint16(p))
	switch network {
	case "tcp", "tcp6":
		return ns.DialTCP(ctx, ap)
	case "udp", "udp6":
		if !ip.Is6() {
			return nil, fmt.Errorf("utun: netstack dial %v: not an IPv6 address", ap)
		}
		raddr := fullAddr(ap)
		return gonet.DialUDP(ns.stack, nil, &raddr, ipv6.ProtocolNumber)
	}
	return nil, fmt.Errorf("utun: netstack dial: network %q not supported", network)
}

// ListenUDP opens an unconnected UDP socket bound to addr in the stack; an
// unspecified address means the stack's own address.
func (ns *Netstack) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	if addr.Addr().IsValid() && !addr.Addr().IsUnspecified() && !addr.Addr().Is6() {
		return nil, fmt.Errorf("utun: netstack listen %v: not an IPv6 address", addr)
	}
	laddr := fullAddr(addr)
	c, err := gonet.DialUDP(ns.stack, &laddr, nil, ipv6.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("utun: netstack listen udp %v: %w", addr, err)
	}
	return c, nil
}

// ListenTCP listens on addr in the stack; an unspecified address means the
// stack's own address.
func (ns *Netstack) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	if addr.Addr().IsValid() && !addr.Addr().IsUnspecified() && !addr.Addr().Is6() {
		return nil, fmt.Errorf("utun: netstack listen %v: not an IPv6 address", addr)
	}
	ln, err := gonet.ListenTCP(ns.stack, fullAddr(addr), ipv6.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("utun: netstack listen %v: %w", addr, err)
	}
	return ln, nil
}
