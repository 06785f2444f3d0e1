package mdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Port is the mDNS port.
const Port = 5353

// The mDNS groups (RFC 6762 §3).
var (
	GroupIPv4 = netip.MustParseAddr("224.0.0.251")
	GroupIPv6 = netip.MustParseAddr("ff02::fb")
)

// datagram is one packet received on the conn's interface.
type datagram struct {
	b   []byte
	src netip.AddrPort // link-local sources carry the interface as zone
}

// conn is the mDNS sockets of one interface: IPv4 and IPv6 (either may be
// missing, not both). Bound to port 5353 with address reuse (a system
// responder — mDNSResponder, avahi — keeps working) and joined to the groups
// on this interface only; or, for a one-shot querier that could not get 5353,
// bound to an ephemeral port (answers then come back by unicast, RFC 6762
// §6.7). Datagrams that arrived on other interfaces are dropped: with the
// socket bound to the wildcard address Linux delivers every group's traffic
// from every interface.
//
// One reader goroutine per family feeds in; close stops and waits for them.
type conn struct {
	ifi  *net.Interface
	port int
	p4   *ipv4.PacketConn
	p6   *ipv6.PacketConn

	in   chan datagram
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// listen opens the sockets of ifi. port 0 means ephemeral (no groups
// joined).
func listen(ifi *net.Interface, port int) (*conn, error) {
	c := &conn{ifi: ifi, port: port, in: make(chan datagram, 16), done: make(chan struct{})}
	lc := net.ListenConfig{Control: reuseControl}
	var errs []error
	if pc, err := lc.ListenPacket(context.Background(), "udp4", ":"+strconv.Itoa(port)); err != nil {
		errs = append(errs, err)
	} else {
		c.p4 = ipv4.NewPacketConn(pc)
		if err := c.setup4(); err != nil {
			pc.Close()
			c.p4 = nil
			errs = append(errs, err)
		}
	}
	if pc, err := lc.ListenPacket(context.Background(), "udp6", ":"+strconv.Itoa(port)); err != nil {
		errs = append(errs, err)
	} else {
		c.p6 = ipv6.NewPacketConn(pc)
		if err := c.setup6(); err != nil {
			pc.Close()
			c.p6 = nil
			errs = append(errs, err)
		}
	}
	if c.p4 == nil && c.p6 == nil {
		return nil, fmt.Errorf("mdns: listen on %s: %w", ifi.Name, errors.Join(errs...))
	}
	if c.p4 != nil {
		c.wg.Go(c.read4)
	}
	if c.p6 != nil {
		c.wg.Go(c.read6)
	}
	return c, nil
}

func (c *conn) setup4() error {
	if c.port == Port {
		if err := c.p4.JoinGroup(c.ifi, &net.UDPAddr{IP: GroupIPv4.AsSlice()}); err != nil {
			return fmt.Errorf("join %v: %w", GroupIPv4, err)
		}
	}
	if err := c.p4.SetMulticastInterface(c.ifi); err != nil {
		return err
	}
	// RFC 6762 §11: sent with TTL 255; loopback on so that a responder and
	// a browser in one network namespace see each other.
	c.p4.SetMulticastTTL(255)
	c.p4.SetMulticastLoopback(true)
	return c.p4.SetControlMessage(ipv4.FlagInterface, true)
}

func (c *conn) setup6() error {
	if c.port == Port {
		if err := c.p6.JoinGroup(c.ifi, &net.UDPAddr{IP: GroupIPv6.AsSlice()}); err != nil {
			return fmt.Errorf("join %v: %w", GroupIPv6, err)
		}
	}
	if err := c.p6.SetMulticastInterface(c.ifi); err != nil {
		return err
	}
	c.p6.SetMulticastHopLimit(255)
	c.p6.SetMulticastLoopback(true)
	return c.p6.SetControlMessage(ipv6.FlagInterface, true)
}

func (c *conn) read4() {
	buf := make([]byte, MaxPacket+1)
	for {
		n, cm, src, err := c.p4.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if cm != nil && cm.IfIndex != 0 && cm.IfIndex != c.ifi.Index {
			continue
		}
		if !c.deliver(buf[:n], src) {
			return
		}
	}
}

func (c *conn) read6() {
	buf := make([]byte, MaxPacket+1)
	for {
		n, cm, src, err := c.p6.ReadFrom(buf)
		if err != nil {
			return
		}
		if cm != nil && cm.IfIndex != 0 && cm.IfIndex != c.ifi.Index {
			continue
		}
		if !c.deliver(buf[:n], src) {
			return
		}
	}
}

func (c *conn) deliver(b []byte, src net.Addr) bool {
	ua, ok := src.(*net.UDPAddr)
	if !ok || len(b) > MaxPacket {
		return true
	}
	ap := ua.AddrPort()
	addr := ap.Addr().Unmap()
	if addr.Is6() && (addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast()) {
		addr = addr.WithZone(c.ifi.Name)
	}
	d := datagram{b: append([]byte(nil), b...), src: netip.AddrPortFrom(addr, ap.Port())}
	select {
	case c.in <- d:
		return true
	case <-c.done:
		return false
	}
}

// multicast sends b to the group of every open family.
func (c *conn) multicast(b []byte) error {
	var errs []error
	if c.p4 != nil {
		if _, err := c.p4.WriteTo(b, nil, &net.UDPAddr{IP: GroupIPv4.AsSlice(), Port: Port}); err != nil {
			errs = append(errs, err)
		}
	}
	if c.p6 != nil {
		if _, err := c.p6.WriteTo(b, nil, &net.UDPAddr{IP: GroupIPv6.AsSlice(), Port: Port, Zone: c.ifi.Name}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 2 || (len(errs) == 1 && (c.p4 == nil || c.p6 == nil)) {
		return fmt.Errorf("mdns: send on %s: %w", c.ifi.Name, errors.Join(errs...))
	}
	return nil
}

// unicast sends b to dst over the matching family.
func (c *conn) unicast(b []byte, dst netip.AddrPort) error {
	ua := net.UDPAddrFromAddrPort(dst)
	var err error
	switch {
	case dst.Addr().Is4() && c.p4 != nil:
		_, err = c.p4.WriteTo(b, nil, ua)
	case dst.Addr().Is6() && c.p6 != nil:
		_, err = c.p6.WriteTo(b, nil, ua)
	default:
		err = errors.New("no socket for that family")
	}
	if err != nil {
		return fmt.Errorf("mdns: send to %v: %w", dst, err)
	}
	return nil
}

// close closes the sockets and waits for the readers. Idempotent.
func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		if c.p4 != nil {
			c.p4.Close()
		}
		if c.p6 != nil {
			c.p6.Close()
		}
		c.wg.Wait()
	})
}
