package mdns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Announcement is one DNS-SD service instance to advertise (RFC 6763 §4).
type Announcement struct {
	// Instance is the instance label, e.g. "iPhone" (no dots: see
	// ParsePacket).
	Instance string
	// Type is the service type, e.g. "_remoted._tcp".
	Type string
	// Domain defaults to "local.".
	Domain string
	// Host is the SRV target, e.g. "iPhone.local.".
	Host string
	Port uint16
	// Text holds the TXT strings, usually "key=value".
	Text []string
	// Addrs are the host's addresses; empty means the interface's own.
	Addrs []netip.Addr
}

// FQDN is the instance's full name, e.g. "iPhone._remoted._tcp.local.".
func (s *Announcement) FQDN() string { return s.Instance + "." + s.typeName() }

func (s *Announcement) typeName() string {
	d := s.Domain
	if d == "" {
		d = "local."
	}
	return strings.TrimSuffix(s.Type, ".") + "." + fqdn(d)
}

// servicesMeta is the DNS-SD service-type enumeration name (RFC 6763 §9).
const servicesMeta = "_services._dns-sd._udp.local."

// TTLs (RFC 6762 §10): records naming a host 120 s, others 75 min.
const (
	ttlHost  = 120
	ttlOther = 4500
	// legacyTTL caps TTLs in replies to legacy unicast queriers
	// (RFC 6762 §6.7).
	legacyTTL = 10
)

// ResponderConfig configures a Responder.
type ResponderConfig struct {
	// Interface is the name of the link to advertise on.
	Interface string
	Services  []Announcement
	// Logger receives debug lines about dropped packets; nil discards.
	Logger *slog.Logger
}

// Responder answers mDNS queries for its services on one interface and
// announces them on start and withdraws them (goodbye, TTL 0) on Close.
//
// It answers PTR, SRV, TXT, A, AAAA and ANY questions, puts SRV, TXT and
// addresses as additional records in PTR answers (pymobiledevice3 sends no
// follow-up queries, discovery.md §2.3), honours the QU bit and legacy
// unicast queriers (RFC 6762 §6.7), and suppresses PTR answers the querier
// already knows (§7.1). It does not probe for name conflicts (§8.1) nor
// delay shared answers (§6): it is meant for a simulated device on a link the
// caller owns.
type Responder struct {
	c    *conn
	log  *slog.Logger
	svcs []svcRecords

	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// svcRecords are one service's records, built once.
type svcRecords struct {
	typeName, inst, host string
	ptr, meta, srv, txt  Record
	addrs                []Record
}

// NewResponder opens port 5353 on the interface and starts answering.
func NewResponder(cfg ResponderConfig) (*Responder, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("mdns: responder: %w", err)
	}
	if len(cfg.Services) == 0 {
		return nil, errors.New("mdns: responder: no services")
	}
	var own []netip.Addr
	if ifAddrs, err := ifi.Addrs(); err == nil {
		for _, a := range ifAddrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				own = append(own, p.Addr().WithZone(""))
			}
		}
	}
	r := &Responder{log: cfg.Logger, done: make(chan struct{})}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for _, s := range cfg.Services {
		if s.Instance == "" || s.Type == "" || s.Host == "" {
			return nil, fmt.Errorf("mdns: responder: service %q needs Instance, Type and Host", s.Instance)
		}
		addrs := s.Addrs
		if len(addrs) == 0 {
			addrs = own
		}
		r.svcs = append(r.svcs, buildRecords(s, addrs))
	}
	// Check every record encodes before going on the air.
	if _, err := r.announcement(ttlOther).Append(nil); err != nil {
		return nil, fmt.Errorf("mdns: responder: %w", err)
	}
	if r.c, err = listen(ifi, Port); err != nil {
		return nil, err
	}
	r.wg.Go(r.run)
	return r, nil
}

func buildRecords(s Announcement, addrs []netip.Addr) svcRecords {
	sr := svcRecords{typeName: s.typeName(), inst: s.FQDN(), host: fqdn(s.Host)}
	sr.ptr = Record{Name: sr.typeName, Type: TypePTR, TTL: ttlOther, Target: sr.inst}
	sr.meta = Record{Name: servicesMeta, Type: TypePTR, TTL: ttlOther, Target: sr.typeName}
	sr.srv = Record{Name: sr.inst, Type: TypeSRV, TTL: ttlHost, CacheFlush: true, Target: sr.host, Port: s.Port}
	sr.txt = Record{Name: sr.inst, Type: TypeTXT, TTL: ttlOther, CacheFlush: true, Text: s.Text}
	for _, a := range addrs {
		t := TypeAAAA
		if a.Is4() || a.Is4In6() {
			t, a = TypeA, a.Unmap()
		}
		sr.addrs = append(sr.addrs, Record{Name: sr.host, Type: t, TTL: ttlHost, CacheFlush: true, Addr: a.WithZone("")})
	}
	return sr
}

// announcement is an unsolicited response with every record (RFC 6762
// §8.3); with ttl 0 it is the goodbye (§10.1).
func (r *Responder) announcement(ttl uint32) *Packet {
	pk := &Packet{Response: true}
	for _, s := range r.svcs {
		for _, rec := range append([]Record{s.ptr, s.srv, s.txt}, s.addrs...) {
			rec.TTL = min(rec.TTL, ttl)
			pk.Answers = appendUnique(pk.Answers, rec)
		}
	}
	return pk
}

func (r *Responder) run() {
	// Two announcements one second apart (RFC 6762 §8.3).
	announce := time.NewTimer(0)
	defer announce.Stop()
	sent := 0
	for {
		select {
		case <-r.done:
			return
		case <-announce.C:
			r.send(r.announcement(ttlOther), netip.AddrPort{})
			if sent++; sent < 2 {
				announce.Reset(time.Second)
			}
		case d := <-r.c.in:
			r.handle(d)
		}
	}
}

func (r *Responder) handle(d datagram) {
	pk, err := ParsePacket(d.b)
	if err != nil {
		r.log.Debug("mdns: dropped packet", "from", d.src, "err", err)
		return
	}
	if pk.Response || len(pk.Questions) == 0 {
		return
	}
	reply := &Packet{Response: true}
	unicast := false
	for _, q := range pk.Questions {
		unicast = unicast || q.Unicast
		for i := range r.svcs {
			r.answer(reply, &r.svcs[i], q, pk.Answers)
		}
	}
	if len(reply.Answers) == 0 {
		return
	}
	// Additionals already among the answers are not repeated.
	reply.Additionals = slices.DeleteFunc(reply.Additionals, func(a Record) bool { return containsRecord(reply.Answers, a) })
	legacy := d.src.Port() != Port
	switch {
	case legacy:
		// RFC 6762 §6.7: echo ID and questions, short TTLs, no cache-flush
		// bits.
		reply.ID = pk.ID
		reply.Questions = pk.Questions
		for _, sec := range [][]Record{reply.Answers, reply.Additionals} {
			for i := range sec {
				sec[i].TTL = min(sec[i].TTL, legacyTTL)
				sec[i].CacheFlush = false
			}
		}
		r.send(reply, d.src)
	case unicast:
		r.send(reply, d.src)
	default:
		r.send(reply, netip.AddrPort{})
	}
}

// answer adds the records of s that answer q, minus those listed in known
// with at least half their TTL left (known-answer suppression,
// RFC 6762 §7.1).
func (r *Responder) answer(reply *Packet, s *svcRecords, q Question, known []Record) {
	all := q.Type == TypeANY
	add := func(rec Record) {
		for _, k := range known {
			if sameRecord(k, rec) && k.TTL >= rec.TTL/2 {
				return
			}
		}
		reply.Answers = appendUnique(reply.Answers, rec)
	}
	extra := func(recs ...Record) {
		for _, rec := range recs {
			reply.Additionals = appendUnique(reply.Additionals, rec)
		}
	}
	switch {
	case sameName(q.Name, s.typeName) && (q.Type == TypePTR || all):
		add(s.ptr)
		extra(s.srv, s.txt)
		extra(s.addrs...)
	case sameName(q.Name, servicesMeta) && (q.Type == TypePTR || all):
		add(s.meta)
	case sameName(q.Name, s.inst):
		if q.Type == TypeSRV || all {
			add(s.srv)
			extra(s.addrs...)
		}
		if q.Type == TypeTXT || all {
			add(s.txt)
		}
	case sameName(q.Name, s.host):
		for _, a := range s.addrs {
			if q.Type == a.Type || all {
				add(a)
			} else if q.Type == TypeA || q.Type == TypeAAAA {
				// RFC 6762 §6.2: answering one family, offer the other.
				extra(a)
			}
		}
	}
}

// send encodes and sends pk to dst, or multicasts it when dst is zero.
// Errors are logged: a lost answer is repaired by the querier's retry.
func (r *Responder) send(pk *Packet, dst netip.AddrPort) {
	b, err := pk.Append(nil)
	if err == nil {
		if dst.IsValid() {
			err = r.c.unicast(b, dst)
		} else {
			err = r.c.multicast(b)
		}
	}
	if err != nil {
		r.log.Debug("mdns: send failed", "err", err)
	}
}

// Close sends goodbye packets, stops answering and releases the sockets.
// It is idempotent and returns after the responder's goroutines exited.
func (r *Responder) Close() error {
	r.once.Do(func() {
		close(r.done)
		r.wg.Wait()
		r.send(r.announcement(0), netip.AddrPort{})
		r.c.close()
	})
	return nil
}

func sameRecord(a, b Record) bool {
	if a.Type != b.Type || !sameName(a.Name, b.Name) {
		return false
	}
	switch a.Type {
	case TypePTR:
		return sameName(a.Target, b.Target)
	case TypeSRV:
		return sameName(a.Target, b.Target) && a.Port == b.Port
	case TypeA, TypeAAAA:
		return a.Addr == b.Addr
	case TypeTXT:
		return strings.Join(a.Text, "\x00") == strings.Join(b.Text, "\x00")
	}
	return false
}

func containsRecord(list []Record, r Record) bool {
	for _, x := range list {
		if sameRecord(x, r) {
			return true
		}
	}
	return false
}

func appendUnique(list []Record, r Record) []Record {
	if containsRecord(list, r) {
		return list
	}
	return append(list, r)
}
