package utun

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DialFunc opens a connection through the tunnel; Netstack.DialContext and
// net.Dialer.DialContext fit.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// forwardDialTimeout bounds one dial through the tunnel (go-ios uses 15 s
// for dials through its tunnel, tunnel.md §8.2).
const forwardDialTimeout = 15 * time.Second

// Forwarder relays every connection accepted on a listener (a 127.0.0.1
// port in userspace mode) to a TCP address reached through dial (a device
// port through the netstack): one fixed address (NewForwarder), the one
// each client names in go-ios's preamble (NewPreambleForwarder), or
// whatever a caller's open function connects to (NewOpenForwarder: a
// device service opened by name). Each relay runs one copier per
// direction, half closes when one direction ends, and closes both conns on
// the first error.
type Forwarder struct {
	ln     net.Listener
	target string // "" for a preamble forwarder
	dial   DialFunc
	open   func(ctx context.Context) (net.Conn, error) // set by NewOpenForwarder
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{}

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewForwarder starts accepting on ln, which it owns. logger may be nil.
func NewForwarder(ln net.Listener, target netip.AddrPort, dial DialFunc, logger *slog.Logger) *Forwarder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var t string
	if target.IsValid() {
		t = target.String()
	}
	f := &Forwarder{
		ln:     ln,
		target: t,
		dial:   dial,
		log:    logger,
		conns:  map[net.Conn]struct{}{},
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wg.Add(1)
	go f.acceptLoop()
	return f
}

// NewOpenForwarder relays every connection accepted on ln to a new
// connection open makes (within forwardDialTimeout; ctx ends when the
// forwarder closes). An open error drops the client; open reports it as
// it sees fit. It owns ln; logger may be nil.
func NewOpenForwarder(ln net.Listener, open func(ctx context.Context) (net.Conn, error), logger *slog.Logger) *Forwarder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{ln: ln, open: open, log: logger, conns: map[net.Conn]struct{}{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wg.Add(1)
	go f.acceptLoop()
	return f
}

// NewPreambleForwarder is go-ios's userspace-TUN proxy (tunneld-api.md
// §2.5): in userspace mode nothing else on the host can route to the
// device's tunnel address, so a client first sends a 20-byte preamble — the
// IPv6 destination (16 bytes, network order) and the port as u32 little
// endian — and then talks to that endpoint through dial. One port serves
// every service of the device. It owns ln; logger may be nil.
func NewPreambleForwarder(ln net.Listener, dial DialFunc, logger *slog.Logger) *Forwarder {
	return NewForwarder(ln, netip.AddrPort{}, dial, logger)
}

// PreambleLen is the size of go-ios's userspace-proxy preamble.
const PreambleLen = 20

// preambleTimeout bounds the wait for a client's preamble.
const preambleTimeout = 10 * time.Second

// ParsePreamble decodes go-ios's 20-byte destination.
func ParsePreamble(b []byte) (netip.AddrPort, error) {
	if len(b) != PreambleLen {
		return netip.AddrPort{}, fmt.Errorf("utun: preamble is %d bytes, want %d", len(b), PreambleLen)
	}
	port := binary.LittleEndian.Uint32(b[16:20])
	if port == 0 || port > 0xffff {
		return netip.AddrPort{}, fmt.Errorf("utun: preamble port %d out of range", port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])), uint16(port)), nil
}

// AppendPreamble appends the preamble a client sends to reach dst.
func AppendPreamble(b []byte, dst netip.AddrPort) []byte {
	a := dst.Addr().As16()
	b = append(b, a[:]...)
	return binary.LittleEndian.AppendUint32(b, uint32(dst.Port()))
}

// PreambleDialer dials through go-ios's userspace proxy at proxy (its
// 127.0.0.1 port): each connection opens with the preamble naming the
// device address it is for. It lets a host process reach every port of a
// device whose tunnel ends in another process's userspace stack.
func PreambleDialer(proxy string) DialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		dst, err := netip.ParseAddrPort(address)
		if err != nil {
			return nil, fmt.Errorf("utun: through the userspace proxy: %q is not an IP address and port: %w", address, err)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", proxy)
		if err != nil {
			return nil, fmt.Errorf("utun: userspace proxy at %s: %w", proxy, err)
		}
		if _, err := c.Write(AppendPreamble(nil, dst)); err != nil {
			c.Close()
			return nil, fmt.Errorf("utun: userspace proxy at %s: %w", proxy, err)
		}
		return c, nil
	}
}

// Addr returns the listening address.
func (f *Forwarder) Addr() net.Addr { return f.ln.Addr() }

// Close stops accepting, closes every relayed connection and returns once
// all relays have ended. It is idempotent.
func (f *Forwarder) Close() error {
	f.closeOnce.Do(func() {
		f.cancel()
		f.ln.Close()
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	f.wg.Wait()
	return nil
}

// track registers c for Close; it reports false (and closes c) when the
// forwarder is already closing.
func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx.Err() != nil {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *Forwarder) acceptLoop() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if f.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				f.log.Warn("utun: forwarder accept failed", "listen", f.ln.Addr().String(), "err", err)
			}
			return
		}
		if !f.track(c) {
			return
		}
		f.wg.Add(1)
		go f.relay(c)
	}
}

func (f *Forwarder) relay(c net.Conn) {
	defer f.wg.Done()
	defer f.untrack(c)
	target := f.target
	if target == "" && f.open == nil {
		var pre [PreambleLen]byte
		c.SetReadDeadline(time.Now().Add(preambleTimeout))
		if _, err := io.ReadFull(c, pre[:]); err != nil {
			f.log.Debug("utun: no preamble", "client", c.RemoteAddr(), "err", err)
			return
		}
		c.SetReadDeadline(time.Time{})
		dst, err := ParsePreamble(pre[:])
		if err != nil {
			f.log.Debug("utun: bad preamble", "client", c.RemoteAddr(), "err", err)
			return
		}
		target = dst.String()
	}
	ctx, cancel := context.WithTimeout(f.ctx, forwardDialTimeout)
	var d net.Conn
	var err error
	if f.open != nil {
		d, err = f.open(ctx)
	} else {
		d, err = f.dial(ctx, "tcp", target)
	}
	cancel()
	if err != nil {
		f.log.Debug("utun: forward dial failed", "target", target, "err", err)
		return
	}
	if !f.track(d) {
		return
	}
	defer f.untrack(d)
	if err := Relay(c, d); err != nil {
		f.log.Debug("utun: forward ended", "target", target, "err", err)
	}
}

type closeWriter interface{ CloseWrite() error }

// Relay copies between a and b in both directions until both are done, then
// closes both. When one direction reaches EOF the other conn is half-closed
// (CloseWrite) and the opposite direction keeps flowing; the first error
// closes both conns. It returns the first error, nil after two clean EOFs.
func Relay(a, b net.Conn) error {
	errc := make(chan error, 2)
	go func() { errc <- copyHalf(a, b) }()
	go func() { errc <- copyHalf(b, a) }()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			a.Close()
			b.Close()
		}
	}
	a.Close()
	b.Close()
	return first
}

// copyHalf copies src to dst, then half-closes dst (or closes it, when it
// cannot half-close).
func copyHalf(dst, src net.Conn) error {
	var err error
	if d, s, ok := kernelPair(dst, src); ok {
		// Two kernel sockets with a loopback source (kernel TUN mode: the
		// client's side, on its way to the device through the TUN):
		// TCPConn.ReadFrom splices on Linux, so the bytes stay in the
		// kernel (it falls back to a plain copy where splice is
		// unavailable). The other way, out of a socket fed by the TUN,
		// splice was slower than the copy below in BenchmarkForwarder
		// (forwarder 0.80–0.88× direct instead of 0.88–0.98×, ~0.4 ns/B
		// more CPU: that socket's data arrives in MTU-sized packets, and
		// spliced into loopback they stay that small, where one 256 KiB
		// write makes large segments); docs/perf.md, backend section.
		_, err = d.ReadFrom(s)
	} else {
		// Anything else (gVisor's gonet conns): one large buffer. The
		// wrappers hide ReaderFrom/WriterTo so io.CopyBuffer uses buf
		// instead of a conn's own 32 KiB loop.
		buf := make([]byte, 256<<10)
		_, err = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
	}
	if err != nil {
		return err
	}
	if cw, ok := dst.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return dst.Close()
}

// kernelPair reports whether dst and src are both kernel TCP sockets and
// src is a loopback one: the pairs copyHalf leaves to the kernel.
func kernelPair(dst, src net.Conn) (*net.TCPConn, *net.TCPConn, bool) {
	d, ok1 := dst.(*net.TCPConn)
	s, ok2 := src.(*net.TCPConn)
	if !ok1 || !ok2 {
		return nil, nil, false
	}
	a, ok := s.LocalAddr().(*net.TCPAddr)
	return d, s, ok && a.IP.IsLoopback()
}

// PreambleDial reaches addresses inside a userspace tunnel through another
// process's preamble proxy at proxy (host:port; NewPreambleForwarder,
// tunneld's userspace_proxy_port): it connects there and sends the
// destination's preamble. address must be a literal IPv6 (or IPv4)
// address and port.
func PreambleDial(proxy string) DialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		dst, err := netip.ParseAddrPort(address)
		if err != nil {
			return nil, fmt.Errorf("utun: preamble dial %q: %w", address, err)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", proxy)
		if err != nil {
			return nil, fmt.Errorf("utun: userspace proxy %s: %w", proxy, err)
		}
		if _, err := c.Write(AppendPreamble(nil, dst)); err != nil {
			c.Close()
			return nil, fmt.Errorf("utun: userspace proxy %s: %w", proxy, err)
		}
		return c, nil
	}
}
