package mdns

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func samplePacket() *Packet {
	return &Packet{
		Response: true,
		Answers: []Record{
			{Name: "_remoted._tcp.local.", Type: TypePTR, TTL: 4500, Target: "iPhone._remoted._tcp.local."},
		},
		Additionals: []Record{
			{Name: "iPhone._remoted._tcp.local.", Type: TypeSRV, TTL: 120, CacheFlush: true, Target: "iPhone.local.", Port: 58783},
			{Name: "iPhone._remoted._tcp.local.", Type: TypeTXT, TTL: 4500, CacheFlush: true, Text: []string{"identifier=ABC", "authTag=AAAAAAAA"}},
			{Name: "iPhone.local.", Type: TypeAAAA, TTL: 120, CacheFlush: true, Addr: netip.MustParseAddr("fe80::1c2b:3aff:fe4d:5e6f")},
			{Name: "iPhone.local.", Type: TypeA, TTL: 120, CacheFlush: true, Addr: netip.MustParseAddr("169.254.1.2")},
		},
	}
}

func TestPacketRoundTrip(t *testing.T) {
	for _, pk := range []*Packet{
		samplePacket(),
		{ID: 7, Questions: []Question{{Name: "_remoted._tcp.local.", Type: TypePTR}, {Name: "x.local.", Type: TypeAAAA, Unicast: true}}},
	} {
		b, err := pk.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParsePacket(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, pk) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, *pk)
		}
		// Every strict prefix must fail to parse, never panic.
		for i := range len(b) - 1 {
			if _, err := ParsePacket(b[:i]); err == nil {
				t.Errorf("prefix of %d/%d bytes parsed", i, len(b))
			} else if !errors.Is(err, ErrPacket) {
				t.Errorf("prefix error %v is not ErrPacket", err)
			}
		}
	}
}

// TestParseQueryBytes checks the decoder against a query written by hand
// from RFC 1035 §4.1 (pymobiledevice3's build_query shape: ID 0, flags 0,
// one PTR question, class IN).
func TestParseQueryBytes(t *testing.T) {
	raw, _ := hex.DecodeString("0000" + "0000" + "0001" + "0000" + "0000" + "0000" +
		"085f72656d6f746564" + "045f746370" + "056c6f63616c" + "00" + "000c" + "0001")
	pk, err := ParsePacket(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := Packet{Questions: []Question{{Name: "_remoted._tcp.local.", Type: TypePTR}}}
	if !reflect.DeepEqual(pk, want) {
		t.Errorf("got %+v, want %+v", pk, want)
	}
	// Our encoding of the same query is the same bytes.
	b, err := want.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, raw) {
		t.Errorf("encode = %x, want %x", b, raw)
	}
}

func TestParseRejects(t *testing.T) {
	big := make([]byte, MaxPacket+1)
	if _, err := ParsePacket(big); err == nil {
		t.Error("oversized packet parsed")
	}
	// Compression pointer loop: name at offset 12 points to itself.
	loop, _ := hex.DecodeString("000000000001000000000000" + "c00c" + "000c0001")
	if _, err := ParsePacket(loop); err == nil {
		t.Error("pointer loop parsed")
	}
	// 65 questions.
	q := (&Packet{}).Questions
	for range 65 {
		q = append(q, Question{Name: "a.local.", Type: TypeA})
	}
	b, err := (&Packet{Questions: q}).Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePacket(b); err == nil {
		t.Error("65 questions parsed")
	}
}

func TestSkipsOtherTypesAndClasses(t *testing.T) {
	pk := samplePacket()
	b, _ := pk.Append(nil)
	// Append an NSEC-like unknown record (type 47) by hand.
	b[11]++ // ARCOUNT low byte
	b = append(b, 0xc0, 0x0c, 0x00, 0x2f, 0x80, 0x01, 0, 0, 0, 120, 0, 2, 0xaa, 0xbb)
	got, err := ParsePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Additionals) != len(pk.Additionals) {
		t.Errorf("got %d additionals, want %d", len(got.Additionals), len(pk.Additionals))
	}
}

func FuzzParsePacket(f *testing.F) {
	b, _ := samplePacket().Append(nil)
	f.Add(b)
	q, _ := (&Packet{Questions: []Question{{Name: "_remotepairing._tcp.local.", Type: TypePTR, Unicast: true}}}).Append(nil)
	f.Add(q)
	f.Fuzz(func(t *testing.T, data []byte) {
		pk, err := ParsePacket(data)
		if err != nil {
			return
		}
		// Whatever parses re-encodes (when its names are encodable) and
		// parses to the same value.
		enc, err := pk.Append(nil)
		if err != nil {
			return
		}
		pk2, err := ParsePacket(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		pk.Authority = nil // not written
		if !reflect.DeepEqual(normalize(pk), normalize(pk2)) {
			t.Fatalf("unstable:\n%+v\n%+v", pk, pk2)
		}
	})
}

// normalize maps the encodings that legitimately change on re-encode: an
// empty TXT is written as one empty string; 4-in-6 AAAA are refused.
func normalize(p Packet) Packet {
	for _, sec := range [][]Record{p.Answers, p.Additionals} {
		for i := range sec {
			if sec[i].Type == TypeTXT && len(sec[i].Text) == 0 {
				sec[i].Text = []string{""}
			}
		}
	}
	return p
}

func TestInstanceTXT(t *testing.T) {
	in := Instance{Text: []string{"identifier=X", "authTag=a", "AUTHTAG=b", "flag", "=v", "model=iPhone17,1"}}
	m := in.TXT()
	want := map[string]string{"identifier": "X", "authTag": "a", "flag": "", "model": "iPhone17,1"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("TXT() = %v, want %v", m, want)
	}
	if got := in.TXTValues("authtag"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("TXTValues = %v", got)
	}
}
