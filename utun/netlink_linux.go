package utun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A minimal rtnetlink client: one request at a time, each acknowledged
// (NLM_F_ACK), replies parsed with bounds checks. It covers what a tunnel
// interface needs and nothing else.

// rtnlTimeout bounds the wait for the kernel's acknowledgement.
const rtnlTimeout = 5 * time.Second

type rtnl struct {
	fd  int
	seq uint32
	buf []byte
}

func openRTNL() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	tv := unix.NsecToTimeval(rtnlTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink timeout: %w", err)
	}
	return &rtnl{fd: fd, buf: make([]byte, 1<<16)}, nil
}

func (c *rtnl) close() { unix.Close(c.fd) }

// nlAttr appends one rtattr (length, type, value, padding to 4 bytes).
func nlAttr(b []byte, typ uint16, val []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtAttr+len(val)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// do sends one request and waits for its acknowledgement; a negative errno
// in the ack is returned as a syscall.Errno.
func (c *rtnl) do(typ, flags uint16, body []byte) error {
	_, err := c.query(typ, flags, body, 0)
	return err
}

// query is do for a request the kernel answers with a message of type want
// before its acknowledgement: it returns that message's payload (a copy).
func (c *rtnl) query(typ, flags uint16, body []byte, want uint16) ([]byte, error) {
	c.seq++
	msg := make([]byte, 0, unix.SizeofNlMsghdr+len(body))
	msg = binary.NativeEndian.AppendUint32(msg, uint32(unix.SizeofNlMsghdr+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, typ)
	msg = binary.NativeEndian.AppendUint16(msg, flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	msg = binary.NativeEndian.AppendUint32(msg, c.seq)
	msg = binary.NativeEndian.AppendUint32(msg, 0)
	msg = append(msg, body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink send: %w", err)
	}
	var payload []byte
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return nil, errors.New("netlink: no answer from the kernel")
		}
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		p, done, err := c.parseReply(c.buf[:n], want)
		if p != nil {
			payload = bytes.Clone(p)
		}
		if done {
			if err == nil && want != 0 && payload == nil {
				err = errors.New("netlink: acknowledged without an answer")
			}
			return payload, err
		}
	}
}

// parseAck looks for the NLMSG_ERROR answering the current request.
func (c *rtnl) parseAck(b []byte) (bool, error) {
	_, done, err := c.parseReply(b, 0)
	return done, err
}

// parseReply looks for the answers to the current request: a message of
// type want (0: none), whose payload it returns, and the NLMSG_ERROR that
// ends the exchange.
func (c *rtnl) parseReply(b []byte, want uint16) (payload []byte, done bool, err error) {
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		seq := binary.NativeEndian.Uint32(b[8:12])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return payload, true, errors.New("netlink: malformed reply")
		}
		if seq == c.seq && want != 0 && typ == want {
			payload = b[unix.SizeofNlMsghdr:l]
		}
		if seq == c.seq && typ == unix.NLMSG_ERROR {
			if l < unix.SizeofNlMsghdr+4 {
				return payload, true, errors.New("netlink: short error reply")
			}
			if errno := int32(binary.NativeEndian.Uint32(b[unix.SizeofNlMsghdr:])); errno != 0 {
				return payload, true, syscall.Errno(-errno)
			}
			return payload, true, nil
		}
		next := (l + 3) &^ 3 // messages are 4-byte aligned
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return payload, false, nil
}

// addAddr assigns prefix's address with its prefix length (RTM_NEWADDR),
// without duplicate address detection.
func (c *rtnl) addAddr(index int, prefix netip.Prefix) error {
	a := prefix.Addr().As16()
	body := []byte{unix.AF_INET6, byte(prefix.Bits()), unix.IFA_F_NODAD, unix.RT_SCOPE_UNIVERSE}
	body = binary.NativeEndian.AppendUint32(body, uint32(index))
	body = nlAttr(body, unix.IFA_LOCAL, a[:])
	body = nlAttr(body, unix.IFA_ADDRESS, a[:])
	body = nlAttr(body, unix.IFA_FLAGS, u32(unix.IFA_F_NODAD))
	return c.do(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body)
}

// setLink sets the MTU and the up flag (RTM_NEWLINK on an existing link).
func (c *rtnl) setLink(index, mtu int, up bool) error {
	var flags uint32
	if up {
		flags = unix.IFF_UP
	}
	body := []byte{unix.AF_UNSPEC, 0, 0, 0}
	body = binary.NativeEndian.AppendUint32(body, uint32(index))
	body = binary.NativeEndian.AppendUint32(body, flags)
	body = binary.NativeEndian.AppendUint32(body, unix.IFF_UP) // change mask
	body = nlAttr(body, unix.IFLA_MTU, u32(uint32(mtu)))
	return c.do(unix.RTM_NEWLINK, 0, body)
}

// addRoute adds a host route to dst through the interface (RTM_NEWROUTE).
func (c *rtnl) addRoute(index int, dst netip.Addr) error {
	a := dst.As16()
	body := []byte{
		unix.AF_INET6, 128, 0, 0, // family, dst_len, src_len, tos
		unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST,
	}
	body = binary.NativeEndian.AppendUint32(body, 0) // rtm_flags
	body = nlAttr(body, unix.RTA_DST, a[:])
	body = nlAttr(body, unix.RTA_OIF, u32(uint32(index)))
	return c.do(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body)
}

// routeType asks the kernel how it routes dst (RTM_GETROUTE) and returns
// the route's type: RTN_LOCAL once dst is an address of this host that
// packets are delivered to.
func (c *rtnl) routeType(dst netip.Addr) (byte, error) {
	a := dst.As16()
	body := []byte{unix.AF_INET6, 128, 0, 0, 0, 0, 0, 0} // family, dst_len, src_len, tos, table, protocol, scope, type
	body = binary.NativeEndian.AppendUint32(body, 0)     // rtm_flags
	body = nlAttr(body, unix.RTA_DST, a[:])
	p, err := c.query(unix.RTM_GETROUTE, 0, body, unix.RTM_NEWROUTE)
	if err != nil {
		return 0, err
	}
	if len(p) < unix.SizeofRtMsg {
		return 0, errors.New("netlink: short route reply")
	}
	return p[7], nil
}

// localWait bounds the wait for a new address to take packets.
const localWait = 3 * time.Second

// waitLocal waits until the kernel delivers packets sent to addr. Linux
// installs the local route of an address (even one added with
// IFA_F_NODAD, usable as a source at once) only when its address work runs
// after the link is up, the moment it also sends its Router Solicitation:
// until then a packet to addr is dropped (Ip6InAddrErrors). A connection
// opened the instant the tunnel is up lost its SYN-ACK that way and waited
// a second for the retransmission.
func (c *rtnl) waitLocal(addr netip.Addr) error {
	deadline := time.Now().Add(localWait)
	for {
		typ, err := c.routeType(addr)
		if err == nil && typ == unix.RTN_LOCAL {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("route type %d", typ)
			}
			return fmt.Errorf("address %v not local after %v: %w", addr, localWait, err)
		}
		time.Sleep(200 * time.Microsecond)
	}
}
