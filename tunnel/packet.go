package tunnel

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 and upper-layer constants used by the data plane.
const (
	ipv6HeaderLen = 40
	protoTCP      = 6
	protoICMPv6   = 58

	icmpv6PacketTooBig = 2
	icmpv6EchoRequest  = 128
	icmpv6EchoReply    = 129

	tcpFlagSYN    = 0x02
	tcpOptEOL     = 0
	tcpOptNOP     = 1
	tcpOptMSS     = 2
	tcpMSSOptLen  = 4
	tcpMinHdrLen  = 20
	tcpOverhead   = ipv6HeaderLen + tcpMinHdrLen // MSS = packet size - this
	minIPv6MTUPTB = 1280
)

// ipv6PacketLen returns the total length an IPv6 header announces, and false
// if hdr is not an IPv6 header (version nibble other than 6, tunnel.md §3.1).
func ipv6PacketLen(hdr []byte) (int, bool) {
	if len(hdr) < ipv6HeaderLen || hdr[0]>>4 != 6 {
		return 0, false
	}
	return ipv6HeaderLen + int(binary.BigEndian.Uint16(hdr[4:6])), true
}

// wellFormed reports whether pkt is exactly one IPv6 packet.
func wellFormed(pkt []byte) bool {
	n, ok := ipv6PacketLen(pkt)
	return ok && n == len(pkt)
}

// checksumAdd adds b to the running ones'-complement sum (RFC 1071) as
// big-endian 16-bit words, padding an odd tail with zero.
func checksumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func checksumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// pseudoHeaderSum is the IPv6 pseudo-header (RFC 8200 §8.1) for an
// upper-layer packet of length n and protocol proto.
func pseudoHeaderSum(src, dst []byte, n int, proto byte) uint32 {
	sum := checksumAdd(0, src)
	sum = checksumAdd(sum, dst)
	sum += uint32(n>>16) + uint32(n&0xffff)
	sum += uint32(proto)
	return sum
}

// upperChecksum computes the checksum of an IPv6 packet's upper layer whose
// checksum field (at csumOff from the upper-layer start) is zero.
func upperChecksum(pkt []byte, proto byte) uint16 {
	upper := pkt[ipv6HeaderLen:]
	sum := pseudoHeaderSum(pkt[8:24], pkt[24:40], len(upper), proto)
	return ^checksumFold(checksumAdd(sum, upper))
}

// upperChecksumValid reports whether the upper-layer checksum of pkt
// verifies (the sum including the checksum field folds to 0xffff).
func upperChecksumValid(pkt []byte, proto byte) bool {
	upper := pkt[ipv6HeaderLen:]
	sum := pseudoHeaderSum(pkt[8:24], pkt[24:40], len(upper), proto)
	return checksumFold(checksumAdd(sum, upper)) == 0xffff
}

// tcpSYN returns the TCP header of pkt when pkt is an IPv6 packet whose
// first next header is TCP and which has SYN set. Packets with extension
// headers are left alone: SYNs carry none in practice.
func tcpSYN(pkt []byte) []byte {
	if len(pkt) < ipv6HeaderLen+tcpMinHdrLen || pkt[0]>>4 != 6 || pkt[6] != protoTCP {
		return nil
	}
	tcp := pkt[ipv6HeaderLen:]
	if tcp[13]&tcpFlagSYN == 0 {
		return nil
	}
	doff := int(tcp[12]>>4) * 4
	if doff < tcpMinHdrLen || doff > len(tcp) {
		return nil
	}
	return tcp[:doff]
}

// clampMSS lowers the MSS option of a TCP SYN or SYN-ACK in pkt to at most
// maxMSS and patches the TCP checksum incrementally (RFC 1624), so a packet
// with a bad checksum stays bad. It reports whether it changed pkt.
func clampMSS(pkt []byte, maxMSS int) bool {
	hdr := tcpSYN(pkt)
	if hdr == nil || maxMSS <= 0 || maxMSS > 0xffff {
		return false
	}
	opts := hdr[tcpMinHdrLen:]
	for i := 0; i < len(opts); {
		switch kind := opts[i]; kind {
		case tcpOptEOL:
			return false
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return false
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return false
		}
		if opts[i] == tcpOptMSS && l == tcpMSSOptLen {
			at := tcpMinHdrLen + i + 2 // offset of the MSS value in the TCP header
			if int(binary.BigEndian.Uint16(hdr[at:])) <= maxMSS {
				return false
			}
			// The changed bytes may straddle checksum words: re-sum the
			// word-aligned span around them before and after.
			lo, hi := at&^1, (at+2+1)&^1
			oldSum := checksumAdd(0, hdr[lo:hi])
			binary.BigEndian.PutUint16(hdr[at:], uint16(maxMSS))
			newSum := checksumAdd(0, hdr[lo:hi])
			csum := binary.BigEndian.Uint16(hdr[16:18])
			sum := uint32(^csum) + uint32(^checksumFold(oldSum)) + newSum
			binary.BigEndian.PutUint16(hdr[16:18], ^checksumFold(sum))
			return true
		}
		i += l
	}
	return false
}

// appendEcho appends an ICMPv6 echo packet (request or reply) from src to
// dst.
func appendEcho(b []byte, typ byte, src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	start := len(b)
	b = appendIPv6Header(b, 8+len(data), protoICMPv6, src, dst)
	b = append(b, typ, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, seq)
	b = append(b, data...)
	pkt := b[start:]
	binary.BigEndian.PutUint16(pkt[ipv6HeaderLen+2:], upperChecksum(pkt, protoICMPv6))
	return b
}

// echoID returns the identifier of an ICMPv6 echo packet of type typ, and
// false if pkt is not one.
func echoID(pkt []byte, typ byte) (uint16, bool) {
	if len(pkt) < ipv6HeaderLen+8 || pkt[0]>>4 != 6 || pkt[6] != protoICMPv6 || pkt[ipv6HeaderLen] != typ {
		return 0, false
	}
	return binary.BigEndian.Uint16(pkt[ipv6HeaderLen+4:]), true
}

// appendPacketTooBig appends an ICMPv6 Packet Too Big (RFC 4443 §3.2) telling
// the sender of orig that the path takes at most mtu bytes. It comes from
// orig's destination, the way a router on the path would report it, and
// quotes as much of orig as fits in the IPv6 minimum MTU.
func appendPacketTooBig(b []byte, orig []byte, mtu int) []byte {
	quote := orig
	if max := minIPv6MTUPTB - ipv6HeaderLen - 8; len(quote) > max {
		quote = quote[:max]
	}
	src, _ := netip.AddrFromSlice(orig[24:40])
	dst, _ := netip.AddrFromSlice(orig[8:24])
	start := len(b)
	b = appendIPv6Header(b, 8+len(quote), protoICMPv6, src, dst)
	b = append(b, icmpv6PacketTooBig, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(mtu))
	b = append(b, quote...)
	pkt := b[start:]
	binary.BigEndian.PutUint16(pkt[ipv6HeaderLen+2:], upperChecksum(pkt, protoICMPv6))
	return b
}

func appendIPv6Header(b []byte, payloadLen int, proto byte, src, dst netip.Addr) []byte {
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(payloadLen))
	b = append(b, proto, 64)
	s, d := src.As16(), dst.As16()
	b = append(b, s[:]...)
	return append(b, d[:]...)
}
