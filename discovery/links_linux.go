//go:build linux

package discovery

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"golang.org/x/sys/unix"
)

// NetlinkLinks is the Linux LinkWatcher. It subscribes to rtnetlink's
// RTMGRP_LINK and RTMGRP_IPV6_IFADDR groups and, after each burst of
// notifications, re-reads links and IPv6 addresses with a dump on a second
// socket of its own. Both sockets are opened by NewNetlinkLinks, so they
// belong to the network namespace of the calling thread; Watch may then run
// on any goroutine.
type NetlinkLinks struct {
	ignore []string
	sub    *os.File // notification socket, non-blocking, deadline-capable
	dump   int      // request socket, blocking with a receive timeout
	seq    uint32

	once sync.Once
}

// NewLinkWatcher returns the platform's event-driven LinkWatcher (netlink
// here), or PollLinks if netlink cannot be opened. ignore holds extra
// interface name prefixes to skip. Close it when done if it is a
// *NetlinkLinks.
func NewLinkWatcher(ignore []string) LinkWatcher {
	if n, err := NewNetlinkLinks(ignore); err == nil {
		return n
	}
	return &PollLinks{Ignore: ignore}
}

// NewNetlinkLinks opens the two rtnetlink sockets.
func NewNetlinkLinks(ignore []string) (*NetlinkLinks, error) {
	sub, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("discovery: netlink socket: %w", err)
	}
	if err := unix.Bind(sub, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK | unix.RTMGRP_IPV6_IFADDR}); err != nil {
		unix.Close(sub)
		return nil, fmt.Errorf("discovery: netlink subscribe: %w", err)
	}
	dump, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		unix.Close(sub)
		return nil, fmt.Errorf("discovery: netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(dump, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(sub)
		unix.Close(dump)
		return nil, fmt.Errorf("discovery: netlink timeout: %w", err)
	}
	if err := unix.Bind(dump, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(sub)
		unix.Close(dump)
		return nil, fmt.Errorf("discovery: netlink bind: %w", err)
	}
	return &NetlinkLinks{ignore: ignore, sub: os.NewFile(uintptr(sub), "rtnetlink"), dump: dump}, nil
}

// Close releases the sockets; it is idempotent. A Watch in progress returns.
func (n *NetlinkLinks) Close() error {
	n.once.Do(func() {
		n.sub.Close()
		unix.Close(n.dump)
	})
	return nil
}

// Watch implements LinkWatcher. Only one Watch may run at a time.
func (n *NetlinkLinks) Watch(ctx context.Context, changed func([]Link)) error {
	stop := deadline.Interrupt(ctx, n.sub.SetReadDeadline)
	defer stop()
	last, err := n.List()
	if err != nil {
		return err
	}
	changed(last)
	buf := make([]byte, 1<<16)
	for {
		n.sub.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := n.sub.Read(buf); err != nil && !errors.Is(err, unix.ENOBUFS) {
			// ENOBUFS means notifications were lost: a relist repairs that.
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("discovery: netlink read: %w", err)
		}
		// Fold a burst (a new link brings several messages) into one
		// relist.
		n.sub.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		for {
			if _, err := n.sub.Read(buf); err != nil && !errors.Is(err, unix.ENOBUFS) {
				break
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		links, err := n.List()
		if err != nil {
			return err
		}
		if !slices.Equal(links, last) {
			changed(links)
			last = links
		}
	}
}

// List dumps the current candidate links.
func (n *NetlinkLinks) List() ([]Link, error) {
	links, err := n.request(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	addrs, err := n.request(unix.RTM_GETADDR, unix.AF_INET6)
	if err != nil {
		return nil, err
	}
	return candidateLinks(parseLinks(links), parseAddrs(addrs), n.ignore), nil
}

// request sends one dump request and collects the answer's messages.
func (n *NetlinkLinks) request(typ uint16, family uint8) ([]syscall.NetlinkMessage, error) {
	n.seq++
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], typ)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], n.seq)
	req[unix.NLMSG_HDRLEN] = family
	if err := unix.Sendto(n.dump, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("discovery: netlink dump request: %w", err)
	}
	var out []syscall.NetlinkMessage
	buf := make([]byte, 1<<16)
	// A dump of a few hundred interfaces spans a handful of reads; the
	// bound only stops a runaway peer.
	for range 1024 {
		nr, _, err := unix.Recvfrom(n.dump, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("discovery: netlink dump: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
		if err != nil {
			return nil, fmt.Errorf("discovery: netlink dump: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != n.seq {
				continue // a late answer to an earlier request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return nil, fmt.Errorf("discovery: netlink dump: %w", syscall.Errno(-e))
					}
				}
				return out, nil
			}
			out = append(out, m)
		}
	}
	return nil, errors.New("discovery: netlink dump did not end")
}

type linkInfo struct {
	name  string
	flags net.Flags
}

// parseLinks reads RTM_NEWLINK messages: index → name and flags.
func parseLinks(msgs []syscall.NetlinkMessage) map[int]linkInfo {
	out := map[int]linkInfo{}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		index := int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))
		raw := binary.NativeEndian.Uint32(m.Data[8:12])
		var li linkInfo
		routeAttrs(m.Data[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
			if typ == unix.IFLA_IFNAME {
				if i := slices.Index(v, 0); i >= 0 {
					v = v[:i]
				}
				li.name = string(v)
			}
		})
		if raw&unix.IFF_UP != 0 {
			li.flags |= net.FlagUp
		}
		if raw&unix.IFF_LOOPBACK != 0 {
			li.flags |= net.FlagLoopback
		}
		if raw&unix.IFF_MULTICAST != 0 {
			li.flags |= net.FlagMulticast
		}
		if li.name != "" {
			out[index] = li
		}
	}
	return out
}

type addrInfo struct {
	index int
	addr  netip.Addr
}

// parseAddrs reads RTM_NEWADDR messages: usable IPv6 link-local addresses
// (tentative or DAD-failed ones cannot source a packet yet).
func parseAddrs(msgs []syscall.NetlinkMessage) []addrInfo {
	var out []addrInfo
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != unix.RTM_NEWADDR || len(m.Data) < unix.SizeofIfAddrmsg {
			continue
		}
		if m.Data[0] != unix.AF_INET6 {
			continue
		}
		flags := uint32(m.Data[2])
		index := int(binary.NativeEndian.Uint32(m.Data[4:8]))
		var addr netip.Addr
		routeAttrs(m.Data[unix.SizeofIfAddrmsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.IFA_ADDRESS:
				if len(v) == 16 {
					addr = netip.AddrFrom16([16]byte(v))
				}
			case unix.IFA_FLAGS:
				if len(v) == 4 {
					flags = binary.NativeEndian.Uint32(v)
				}
			}
		})
		if !addr.IsLinkLocalUnicast() || flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		out = append(out, addrInfo{index, addr})
	}
	return out
}

// routeAttrs walks the rtattr list b, calling f for each attribute, and
// stops at the first malformed one. (syscall.ParseNetlinkRouteAttr panics
// on a final attribute whose aligned length overruns the buffer; found by
// FuzzParseDump.)
func routeAttrs(b []byte, f func(typ uint16, v []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4])
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		f(typ&^unix.NLA_F_NESTED, b[unix.SizeofRtAttr:l])
		b = b[min((l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1), len(b)):]
	}
}

func candidateLinks(links map[int]linkInfo, addrs []addrInfo, ignore []string) []Link {
	var out []Link
	seen := map[int]bool{}
	for _, a := range addrs {
		li, ok := links[a.index]
		if !ok || seen[a.index] || !candidate(li.name, li.flags, ignore) {
			continue
		}
		seen[a.index] = true // the first address per link, as pymobiledevice3
		out = append(out, Link{Name: li.name, Index: a.index, Addr: a.addr.WithZone(li.name)})
	}
	sortLinks(out)
	return out
}
