package mdns

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// Record types this package reads and writes.
const (
	TypeA    = dnsmessage.TypeA
	TypeAAAA = dnsmessage.TypeAAAA
	TypePTR  = dnsmessage.TypePTR
	TypeSRV  = dnsmessage.TypeSRV
	TypeTXT  = dnsmessage.TypeTXT
	TypeANY  = dnsmessage.TypeALL
)

// Bounds on a packet (RFC 6762 §17: at most 9000 bytes). Counts beyond
// these are refused rather than parsed, so a hostile packet costs little.
const (
	MaxPacket    = 9000
	maxQuestions = 64
	maxRecords   = 256
)

// classMask strips the mDNS top bit of the class field: unicast-response in
// questions (QU), cache-flush in records (RFC 6762 §10.2, §18.12).
const (
	classMask  = 0x7fff
	classFlag  = 0x8000
	classINET  = uint16(dnsmessage.ClassINET)
	defaultTTL = 120
	hostTTL    = 120
)

// Question is one entry of the question section.
type Question struct {
	Name string // fully qualified, trailing dot
	Type dnsmessage.Type
	// Unicast is the QU bit: the querier asks for a unicast reply.
	Unicast bool
}

// Record is one resource record of a type this package understands.
type Record struct {
	Name string // owner name, fully qualified
	Type dnsmessage.Type
	TTL  uint32
	// CacheFlush is the top bit of the class (unique record set).
	CacheFlush bool

	Target   string     // PTR: the instance name; SRV: the host name
	Port     uint16     // SRV
	Priority uint16     // SRV
	Weight   uint16     // SRV
	Text     []string   // TXT strings
	Addr     netip.Addr // A / AAAA
}

// Packet is an mDNS message: a query (Response false) or a response.
type Packet struct {
	ID       uint16
	Response bool
	// Questions are sent in queries and echoed in legacy unicast replies.
	Questions []Question
	// Answers, then Additionals; authority records (probe tie-breaking) are
	// parsed into Authority and never written.
	Answers     []Record
	Authority   []Record
	Additionals []Record
}

// ErrPacket wraps every parse failure.
var ErrPacket = errors.New("mdns: malformed packet")

func perr(what string, err error) error {
	if err == nil {
		return fmt.Errorf("%w: %s", ErrPacket, what)
	}
	return fmt.Errorf("%w: %s: %v", ErrPacket, what, err)
}

// ParsePacket decodes b. Records of other types and classes are skipped;
// an over-long packet or too many entries is an error. dnsmessage rejects
// labels that contain a dot (golang/go#56246), so a service instance name
// with a '.' in it makes the whole packet unreadable.
func ParsePacket(b []byte) (Packet, error) {
	if len(b) > MaxPacket {
		return Packet{}, perr(fmt.Sprintf("%d bytes", len(b)), nil)
	}
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return Packet{}, perr("header", err)
	}
	pk := Packet{ID: h.ID, Response: h.Response}
	// The header counts are checked before anything is allocated.
	if h.OpCode != 0 {
		return Packet{}, perr("opcode", nil)
	}
	n := 0
	for {
		q, err := p.Question()
		if err == dnsmessage.ErrSectionDone {
			break
		}
		if err != nil {
			return Packet{}, perr("question", err)
		}
		if n++; n > maxQuestions {
			return Packet{}, perr("too many questions", nil)
		}
		if uint16(q.Class)&classMask != classINET {
			continue
		}
		pk.Questions = append(pk.Questions, Question{
			Name:    q.Name.String(),
			Type:    q.Type,
			Unicast: uint16(q.Class)&classFlag != 0,
		})
	}
	total := 0
	sections := []struct {
		header func() (dnsmessage.ResourceHeader, error)
		out    *[]Record
	}{
		{p.AnswerHeader, &pk.Answers},
		{p.AuthorityHeader, &pk.Authority},
		{p.AdditionalHeader, &pk.Additionals},
	}
	for _, sec := range sections {
		for {
			rh, err := sec.header()
			if err == dnsmessage.ErrSectionDone {
				break
			}
			if err != nil {
				return Packet{}, perr("record header", err)
			}
			if total++; total > maxRecords {
				return Packet{}, perr("too many records", nil)
			}
			r, ok, err := parseBody(&p, rh)
			if err != nil {
				return Packet{}, err
			}
			if ok {
				*sec.out = append(*sec.out, r)
			}
		}
	}
	return pk, nil
}

// parseBody reads the record body after rh (or skips it).
func parseBody(p *dnsmessage.Parser, rh dnsmessage.ResourceHeader) (Record, bool, error) {
	r := Record{
		Name:       rh.Name.String(),
		Type:       rh.Type,
		TTL:        rh.TTL,
		CacheFlush: uint16(rh.Class)&classFlag != 0,
	}
	if uint16(rh.Class)&classMask != classINET {
		return r, false, skip(p)
	}
	switch rh.Type {
	case TypePTR:
		b, err := p.PTRResource()
		if err != nil {
			return r, false, perr("PTR", err)
		}
		r.Target = b.PTR.String()
	case TypeSRV:
		b, err := p.SRVResource()
		if err != nil {
			return r, false, perr("SRV", err)
		}
		r.Target, r.Port, r.Priority, r.Weight = b.Target.String(), b.Port, b.Priority, b.Weight
	case TypeTXT:
		b, err := p.TXTResource()
		if err != nil {
			return r, false, perr("TXT", err)
		}
		r.Text = b.TXT
	case TypeA:
		b, err := p.AResource()
		if err != nil {
			return r, false, perr("A", err)
		}
		r.Addr = netip.AddrFrom4(b.A)
	case TypeAAAA:
		b, err := p.AAAAResource()
		if err != nil {
			return r, false, perr("AAAA", err)
		}
		r.Addr = netip.AddrFrom16(b.AAAA)
	default:
		return r, false, skip(p)
	}
	return r, true, nil
}

// skip skips the body of the record whose header was just read. Any
// section's Skip works, the parser knows where it is.
func skip(p *dnsmessage.Parser) error {
	// UnknownResource reads (and bounds-checks) any body generically.
	if _, err := p.UnknownResource(); err != nil {
		return perr("record body", err)
	}
	return nil
}

// Append encodes the packet onto b with name compression.
func (pk *Packet) Append(b []byte) ([]byte, error) {
	bld := dnsmessage.NewBuilder(b, dnsmessage.Header{ID: pk.ID, Response: pk.Response, Authoritative: pk.Response})
	bld.EnableCompression()
	if err := bld.StartQuestions(); err != nil {
		return nil, err
	}
	for _, q := range pk.Questions {
		name, err := dnsmessage.NewName(fqdn(q.Name))
		if err != nil {
			return nil, fmt.Errorf("mdns: question name %q: %w", q.Name, err)
		}
		class := classINET
		if q.Unicast {
			class |= classFlag
		}
		if err := bld.Question(dnsmessage.Question{Name: name, Type: q.Type, Class: dnsmessage.Class(class)}); err != nil {
			return nil, err
		}
	}
	if err := bld.StartAnswers(); err != nil {
		return nil, err
	}
	for i := range pk.Answers {
		if err := appendRecord(&bld, &pk.Answers[i]); err != nil {
			return nil, err
		}
	}
	if err := bld.StartAdditionals(); err != nil {
		return nil, err
	}
	for i := range pk.Additionals {
		if err := appendRecord(&bld, &pk.Additionals[i]); err != nil {
			return nil, err
		}
	}
	return bld.Finish()
}

func appendRecord(b *dnsmessage.Builder, r *Record) error {
	name, err := dnsmessage.NewName(fqdn(r.Name))
	if err != nil {
		return fmt.Errorf("mdns: record name %q: %w", r.Name, err)
	}
	class := classINET
	if r.CacheFlush {
		class |= classFlag
	}
	h := dnsmessage.ResourceHeader{Name: name, Type: r.Type, Class: dnsmessage.Class(class), TTL: r.TTL}
	switch r.Type {
	case TypePTR:
		t, err := dnsmessage.NewName(fqdn(r.Target))
		if err != nil {
			return fmt.Errorf("mdns: PTR target %q: %w", r.Target, err)
		}
		return b.PTRResource(h, dnsmessage.PTRResource{PTR: t})
	case TypeSRV:
		t, err := dnsmessage.NewName(fqdn(r.Target))
		if err != nil {
			return fmt.Errorf("mdns: SRV target %q: %w", r.Target, err)
		}
		return b.SRVResource(h, dnsmessage.SRVResource{Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: t})
	case TypeTXT:
		txt := r.Text
		if len(txt) == 0 {
			// RFC 6763 §6.1: an empty TXT record holds one empty string.
			txt = []string{""}
		}
		return b.TXTResource(h, dnsmessage.TXTResource{TXT: txt})
	case TypeA:
		if !r.Addr.Is4() {
			return fmt.Errorf("mdns: A record with %v", r.Addr)
		}
		return b.AResource(h, dnsmessage.AResource{A: r.Addr.As4()})
	case TypeAAAA:
		if !r.Addr.Is6() || r.Addr.Is4In6() {
			return fmt.Errorf("mdns: AAAA record with %v", r.Addr)
		}
		return b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: r.Addr.As16()})
	}
	return fmt.Errorf("mdns: cannot encode record type %v", r.Type)
}

// fqdn adds the trailing dot.
func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// sameName compares DNS names case-insensitively (RFC 6762 §16), ignoring a
// missing trailing dot.
func sameName(a, b string) bool {
	return strings.EqualFold(fqdn(a), fqdn(b))
}
