package tunneld

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/iosmux/iosmux/utun"
)

// userspaceProxy is go-ios's userspace-TUN proxy (tunneld-api.md §2.5): in
// userspace mode nothing else on the host can route to the device's tunnel
// address, so each tunnel gets a 127.0.0.1 listener whose clients first
// send a 20-byte preamble — the IPv6 destination (16 bytes, network order)
// and the port as u32 little-endian — and then talk to that endpoint
// through the tunnel's userspace stack. go-ios's clients find the port in
// userspaceTunPort.
type userspaceProxy struct {
	ln   net.Listener
	ns   *utun.Netstack
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{}

	wg   sync.WaitGroup
	once sync.Once
}

const (
	preambleLen     = 20
	preambleTimeout = 10 * time.Second
	proxyDialTime   = 15 * time.Second // go-ios's dial timeout through its tunnel
)

func newUserspaceProxy(ns *utun.Netstack, log *slog.Logger) (*userspaceProxy, error) {
	if ns == nil {
		return nil, errors.New("tunneld: userspace proxy without a userspace stack")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &userspaceProxy{ln: ln, ns: ns, log: log, conns: map[net.Conn]struct{}{}}
	p.ctx, p.stop = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Port is the listener's port (userspaceTunPort).
func (p *userspaceProxy) Port() uint16 {
	_, port, _ := net.SplitHostPort(p.ln.Addr().String())
	n, _ := strconv.Atoi(port)
	return uint16(n)
}

// Close stops accepting, closes every relayed connection and waits for the
// relays. It is idempotent.
func (p *userspaceProxy) Close() error {
	p.once.Do(func() {
		p.stop()
		p.ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	p.wg.Wait()
	return nil
}

func (p *userspaceProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *userspaceProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *userspaceProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.relay(c)
		}()
	}
}

// parsePreamble decodes go-ios's 20-byte destination.
func parsePreamble(b []byte) (netip.AddrPort, error) {
	if len(b) != preambleLen {
		return netip.AddrPort{}, errors.New("tunneld: short preamble")
	}
	port := binary.LittleEndian.Uint32(b[16:20])
	if port == 0 || port > 0xffff {
		return netip.AddrPort{}, errors.New("tunneld: preamble port out of range")
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])), uint16(port)), nil
}

func (p *userspaceProxy) relay(c net.Conn) {
	var pre [preambleLen]byte
	c.SetReadDeadline(time.Now().Add(preambleTimeout))
	if _, err := io.ReadFull(c, pre[:]); err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	dst, err := parsePreamble(pre[:])
	if err != nil {
		p.log.Debug("tunneld: userspace proxy: bad preamble", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, proxyDialTime)
	up, err := p.ns.DialContext(ctx, "tcp", dst.String())
	cancel()
	if err != nil {
		p.log.Debug("tunneld: userspace proxy: dial through the tunnel", "dst", dst, "err", err)
		return
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	errc := make(chan error, 2)
	cp := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		errc <- err
	}
	go cp(up, c)
	go cp(c, up)
	// Both directions end (EOF or error); a failure closes both conns
	// through the deferred untracks, which ends the other copier.
	if err := <-errc; err != nil {
		c.Close()
		up.Close()
	}
	<-errc
}
