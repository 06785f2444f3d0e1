package discovery

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// nlmsg builds one netlink message: header, fixed part, attributes.
func nlmsg(typ uint16, fixed []byte, attrs ...[]byte) []byte {
	body := append([]byte(nil), fixed...)
	for _, a := range attrs {
		body = append(body, a...)
	}
	b := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(b[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	return append(b, body...)
}

func rtattr(typ uint16, v []byte) []byte {
	l := 4 + len(v)
	b := make([]byte, 4, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func ifinfo(index int32, flags uint32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], flags)
	return b
}

func ifaddr(index uint32, flags uint8) []byte {
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0] = unix.AF_INET6
	b[2] = flags
	binary.NativeEndian.PutUint32(b[4:], index)
	return b
}

func sampleDump() []byte {
	ll := netip.MustParseAddr("fe80::1").As16()
	ll2 := netip.MustParseAddr("fe80::2").As16()
	global := netip.MustParseAddr("2001:db8::1").As16()
	up := uint32(unix.IFF_UP | unix.IFF_MULTICAST)
	var b []byte
	b = append(b, nlmsg(unix.RTM_NEWLINK, ifinfo(1, up|unix.IFF_LOOPBACK), rtattr(unix.IFLA_IFNAME, []byte("lo\x00")))...)
	b = append(b, nlmsg(unix.RTM_NEWLINK, ifinfo(5, up), rtattr(unix.IFLA_IFNAME, []byte("enx1\x00")))...)
	b = append(b, nlmsg(unix.RTM_NEWLINK, ifinfo(6, up), rtattr(unix.IFLA_IFNAME, []byte("tun0\x00")))...)
	b = append(b, nlmsg(unix.RTM_NEWLINK, ifinfo(7, unix.IFF_MULTICAST), rtattr(unix.IFLA_IFNAME, []byte("down0\x00")))...)
	b = append(b, nlmsg(unix.RTM_NEWLINK, ifinfo(8, up), rtattr(unix.IFLA_IFNAME, []byte("enx2\x00")))...)
	b = append(b, nlmsg(unix.RTM_NEWADDR, ifaddr(5, 0), rtattr(unix.IFA_ADDRESS, global[:]))...)
	b = append(b, nlmsg(unix.RTM_NEWADDR, ifaddr(5, 0), rtattr(unix.IFA_ADDRESS, ll[:]))...)
	b = append(b, nlmsg(unix.RTM_NEWADDR, ifaddr(5, 0), rtattr(unix.IFA_ADDRESS, ll2[:]))...)
	b = append(b, nlmsg(unix.RTM_NEWADDR, ifaddr(6, 0), rtattr(unix.IFA_ADDRESS, ll[:]))...)
	b = append(b, nlmsg(unix.RTM_NEWADDR, ifaddr(7, 0), rtattr(unix.IFA_ADDRESS, ll[:]))...)
	// enx2's address is still tentative (flag in the extended attribute).
	b = append(b, nlmsg(unix.RTM_NEWADDR, ifaddr(8, 0), rtattr(unix.IFA_ADDRESS, ll[:]), rtattr(unix.IFA_FLAGS, binary.NativeEndian.AppendUint32(nil, unix.IFA_F_TENTATIVE)))...)
	return b
}

func TestParseDump(t *testing.T) {
	msgs, err := syscall.ParseNetlinkMessage(sampleDump())
	if err != nil {
		t.Fatal(err)
	}
	got := candidateLinks(parseLinks(msgs), parseAddrs(msgs), nil)
	want := []Link{{Name: "enx1", Index: 5, Addr: netip.MustParseAddr("fe80::1%enx1")}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("links = %+v, want %+v", got, want)
	}
}

// FuzzParseDump feeds arbitrary bytes through the stdlib netlink framing
// and our link/address readers: no panic, and every link found is a
// candidate with a scoped link-local address.
func FuzzParseDump(f *testing.F) {
	f.Add(sampleDump())
	f.Add(nlmsg(unix.RTM_NEWLINK, ifinfo(1, 0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := syscall.ParseNetlinkMessage(data)
		if err != nil {
			return
		}
		for _, l := range candidateLinks(parseLinks(msgs), parseAddrs(msgs), nil) {
			if !l.Addr.IsLinkLocalUnicast() || l.Addr.Zone() != l.Name {
				t.Fatalf("bad link %+v", l)
			}
		}
	})
}
