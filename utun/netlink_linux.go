package utun

import (
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
	c.seq++
	msg := make([]byte, 0, unix.SizeofNlMsghdr+len(body))
	msg = binary.NativeEndian.AppendUint32(msg, uint32(unix.SizeofNlMsghdr+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, typ)
	msg = binary.NativeEndian.AppendUint16(msg, flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	msg = binary.NativeEndian.AppendUint32(msg, c.seq)
	msg = binary.NativeEndian.AppendUint32(msg, 0)
	msg = append(msg, body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return errors.New("netlink: no answer from the kernel")
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		done, err := c.parseAck(c.buf[:n])
		if done {
			return err
		}
	}
}

// parseAck looks for the NLMSG_ERROR answering the current request.
func (c *rtnl) parseAck(b []byte) (bool, error) {
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		seq := binary.NativeEndian.Uint32(b[8:12])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return true, errors.New("netlink: malformed reply")
		}
		if seq == c.seq && typ == unix.NLMSG_ERROR {
			if l < unix.SizeofNlMsghdr+4 {
				return true, errors.New("netlink: short error reply")
			}
			if errno := int32(binary.NativeEndian.Uint32(b[unix.SizeofNlMsghdr:])); errno != 0 {
				return true, syscall.Errno(-errno)
			}
			return true, nil
		}
		next := (l + 3) &^ 3 // messages are 4-byte aligned
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return false, nil
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
