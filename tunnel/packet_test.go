package tunnel

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

var (
	hostAddr = netip.MustParseAddr("fd58:8c92:8961::2")
	devAddr  = netip.MustParseAddr("fd58:8c92:8961::1")
)

// makeTCP builds an IPv6/TCP packet with a correct checksum.
func makeTCP(src, dst netip.Addr, flags byte, opts, payload []byte) []byte {
	hdrLen := tcpMinHdrLen + len(opts)
	for hdrLen%4 != 0 {
		opts = append(opts, tcpOptEOL)
		hdrLen++
	}
	b := appendIPv6Header(nil, hdrLen+len(payload), protoTCP, src, dst)
	tcp := make([]byte, tcpMinHdrLen, hdrLen)
	binary.BigEndian.PutUint16(tcp[0:], 49152)
	binary.BigEndian.PutUint16(tcp[2:], 58783)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12] = byte(hdrLen/4) << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	tcp = append(tcp, opts...)
	b = append(b, tcp...)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[ipv6HeaderLen+16:], upperChecksum(b, protoTCP))
	return b
}

func mssOpt(v uint16) []byte { return []byte{tcpOptMSS, 4, byte(v >> 8), byte(v)} }

func packetMSS(pkt []byte) int {
	hdr := tcpSYN(pkt)
	opts := hdr[tcpMinHdrLen:]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case tcpOptEOL:
			return -1
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 {
			return -1
		}
		if opts[i] == tcpOptMSS {
			return int(binary.BigEndian.Uint16(opts[i+2:]))
		}
		i += int(opts[i+1])
	}
	return -1
}

func TestClampMSS(t *testing.T) {
	tests := []struct {
		name    string
		flags   byte
		opts    []byte
		max     int
		changed bool
		wantMSS int
	}{
		{"syn above", tcpFlagSYN, mssOpt(15940), 7940, true, 7940},
		{"syn-ack above", tcpFlagSYN | 0x10, mssOpt(65000), 7940, true, 7940},
		{"syn below", tcpFlagSYN, mssOpt(1220), 7940, false, 1220},
		{"odd offset", tcpFlagSYN, append([]byte{tcpOptNOP}, append(mssOpt(15940), tcpOptNOP, tcpOptNOP, tcpOptNOP)...), 7940, true, 7940},
		{"after sack-perm and ts", tcpFlagSYN, append([]byte{4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, tcpOptNOP}, mssOpt(9000)...), 1400, true, 1400},
		{"not syn", 0x10, mssOpt(15940), 7940, false, -2},
		{"no mss", tcpFlagSYN, []byte{tcpOptNOP, tcpOptNOP, 4, 2}, 7940, false, -1},
		{"bad option length", tcpFlagSYN, []byte{3, 0, 0, 0}, 7940, false, -1},
		{"option overruns", tcpFlagSYN, []byte{tcpOptNOP, tcpOptNOP, tcpOptNOP, 2}, 7940, false, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := makeTCP(hostAddr, devAddr, tt.flags, tt.opts, []byte("hello"))
			if !upperChecksumValid(pkt, protoTCP) {
				t.Fatal("test packet has a bad checksum")
			}
			orig := append([]byte(nil), pkt...)
			if got := clampMSS(pkt, tt.max); got != tt.changed {
				t.Fatalf("clampMSS = %v, want %v", got, tt.changed)
			}
			if !upperChecksumValid(pkt, protoTCP) {
				t.Fatal("checksum invalid after clamping")
			}
			if !tt.changed && string(orig) != string(pkt) {
				t.Fatal("packet changed although clampMSS said no")
			}
			if tt.wantMSS != -2 {
				if got := packetMSS(pkt); got != tt.wantMSS {
					t.Fatalf("MSS = %d, want %d", got, tt.wantMSS)
				}
			}
		})
	}
}

func TestClampMSSKeepsBadChecksumBad(t *testing.T) {
	pkt := makeTCP(hostAddr, devAddr, tcpFlagSYN, mssOpt(15940), nil)
	pkt[ipv6HeaderLen+16] ^= 0x55
	if !clampMSS(pkt, 1000) {
		t.Fatal("not clamped")
	}
	if upperChecksumValid(pkt, protoTCP) {
		t.Fatal("a corrupt packet became valid")
	}
}

func TestClampMSSIgnoresOthers(t *testing.T) {
	for _, pkt := range [][]byte{
		nil,
		{0x60},
		appendEcho(nil, icmpv6EchoRequest, hostAddr, devAddr, 1, 1, nil),
		append([]byte{0x45}, make([]byte, 59)...),
	} {
		if clampMSS(pkt, 1000) {
			t.Fatalf("clamped %x", pkt)
		}
	}
}

func TestEcho(t *testing.T) {
	req := appendEcho(nil, icmpv6EchoRequest, hostAddr, devAddr, 0xbeef, 7, probeData)
	if !wellFormed(req) || !upperChecksumValid(req, protoICMPv6) {
		t.Fatalf("bad echo request %x", req)
	}
	if id, ok := echoID(req, icmpv6EchoRequest); !ok || id != 0xbeef {
		t.Fatalf("echoID = %#x, %v", id, ok)
	}
	if _, ok := echoID(req, icmpv6EchoReply); ok {
		t.Fatal("request taken for a reply")
	}
}

func TestPacketTooBig(t *testing.T) {
	big := makeTCP(hostAddr, devAddr, 0x10, nil, make([]byte, 9000))
	ptb := appendPacketTooBig(nil, big, 8000)
	if !wellFormed(ptb) || !upperChecksumValid(ptb, protoICMPv6) {
		t.Fatal("bad Packet Too Big")
	}
	if len(ptb) != minIPv6MTUPTB {
		t.Fatalf("PTB is %d bytes, want %d (quote fills the minimum MTU)", len(ptb), minIPv6MTUPTB)
	}
	if ptb[ipv6HeaderLen] != icmpv6PacketTooBig || binary.BigEndian.Uint32(ptb[ipv6HeaderLen+4:]) != 8000 {
		t.Fatalf("PTB header %x", ptb[ipv6HeaderLen:ipv6HeaderLen+8])
	}
	// It goes back to the sender, from the original destination.
	if string(ptb[8:24]) != string(big[24:40]) || string(ptb[24:40]) != string(big[8:24]) {
		t.Fatal("PTB addresses not swapped")
	}
}

func FuzzClampMSS(f *testing.F) {
	f.Add(makeTCP(hostAddr, devAddr, tcpFlagSYN, mssOpt(15940), nil), 7940)
	f.Add(makeTCP(hostAddr, devAddr, tcpFlagSYN, append([]byte{tcpOptNOP}, mssOpt(9000)...), nil), 100)
	f.Add([]byte{0x60}, 1)
	f.Fuzz(func(t *testing.T, pkt []byte, max int) {
		valid := len(pkt) >= ipv6HeaderLen+tcpMinHdrLen && wellFormed(pkt) && pkt[6] == protoTCP && upperChecksumValid(pkt, protoTCP)
		n := len(pkt)
		changed := clampMSS(pkt, max)
		if len(pkt) != n {
			t.Fatal("length changed")
		}
		if changed && valid && !upperChecksumValid(pkt, protoTCP) {
			t.Fatal("valid checksum broken by clamping")
		}
	})
}
