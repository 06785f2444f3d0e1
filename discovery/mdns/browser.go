package mdns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Service types iosmux browses (discovery.md §2–§5).
const (
	ServiceRemoted       = "_remoted._tcp"       // USB-NCM RSD (port 58783)
	ServiceRemotePairing = "_remotepairing._tcp" // Wi-Fi RemotePairing
	ServiceMobdev2       = "_apple-mobdev2._tcp" // lockdown over Wi-Fi (62078)
)

// DefaultBrowseTimeout is pymobiledevice3's DEFAULT_BONJOUR_TIMEOUT on
// POSIX (discovery.md §8).
const DefaultBrowseTimeout = 3 * time.Second

// Instance is one browsed service instance.
type Instance struct {
	// Name is the instance label ("iPhone"), Service the type's full name
	// ("_remoted._tcp.local.").
	Name    string
	Service string
	// Host is the SRV target without its trailing dot, Port the SRV port.
	Host string
	Port uint16
	// Text is the TXT record's strings in wire order.
	Text []string
	// Addrs are the host's addresses; link-local ones carry the interface
	// as zone (fe80::1%en7).
	Addrs     []netip.Addr
	Interface string
}

// TXT returns the TXT record as a map. Keys are compared case-insensitively
// and only the first occurrence counts (RFC 6763 §6.4); a key without '='
// maps to "".
func (in *Instance) TXT() map[string]string {
	m := make(map[string]string, len(in.Text))
	seen := map[string]bool{}
	for _, s := range in.Text {
		k, v, _ := strings.Cut(s, "=")
		lk := strings.ToLower(k)
		if k == "" || seen[lk] {
			continue
		}
		seen[lk] = true
		m[k] = v
	}
	return m
}

// TXTValues returns every value of key, in order. Apple repeats some keys
// (mobdev2 authTag, idevice mdns.rs) despite RFC 6763 §6.4.
func (in *Instance) TXTValues(key string) []string {
	var out []string
	for _, s := range in.Text {
		k, v, _ := strings.Cut(s, "=")
		if strings.EqualFold(k, key) {
			out = append(out, v)
		}
	}
	return out
}

// BrowseConfig configures Browse.
type BrowseConfig struct {
	// Interface is the link to query on.
	Interface string
	// Service is the type, e.g. ServiceRemoted; ".local." is added.
	Service string
	// Timeout bounds the browse; default DefaultBrowseTimeout.
	Timeout time.Duration
	// MaxInstances, when positive, ends the browse early once that many
	// instances are complete (SRV and at least one address): a USB-NCM
	// link carries exactly one device.
	MaxInstances int
	// Logger receives debug lines about dropped packets; nil discards.
	Logger *slog.Logger
}

// Bounds on what one browse collects.
const (
	maxInstances = 64
	maxHosts     = 64
	maxAddrs     = 16
)

// Browse queries for cfg.Service on one interface and returns the instances
// seen before the timeout: every instance with an SRV record, in the order
// they were first seen. It queries at once and again after 1 s, 2 s, …
// (RFC 6762 §5.2), each time also asking for the SRV/TXT of instances and the
// addresses of hosts still missing (pymobiledevice3 relies on additional
// records alone; asking costs nothing and survives a responder that omits
// them). Instances withdrawn with a goodbye are dropped.
//
// Browse listens on port 5353 (shared with the system responder); if that
// port cannot be had it queries from an ephemeral port and receives unicast
// replies (RFC 6762 §6.7). It returns ctx's error if ctx ends first, with what was
// collected so far.
func Browse(ctx context.Context, cfg BrowseConfig) ([]Instance, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("mdns: browse: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultBrowseTimeout
	}
	c, err := listen(ifi, Port)
	if err != nil {
		if c, err = listen(ifi, 0); err != nil {
			return nil, err
		}
	}
	defer c.close()

	svc := Announcement{Type: cfg.Service}
	col := newCollector(svc.typeName(), ifi.Name)
	end := time.NewTimer(timeout)
	defer end.Stop()
	interval := time.Second
	requery := time.NewTimer(0)
	defer requery.Stop()
	for {
		select {
		case <-ctx.Done():
			return col.instances(), ctx.Err()
		case <-end.C:
			return col.instances(), nil
		case <-requery.C:
			b, err := col.query().Append(nil)
			if err == nil {
				err = c.multicast(b)
			}
			if err != nil {
				// A send failure on one pass is retried on the next.
				log.Debug("mdns: query failed", "interface", ifi.Name, "err", err)
			}
			requery.Reset(interval)
			interval *= 2
		case d := <-c.in:
			pk, err := ParsePacket(d.b)
			if err != nil {
				log.Debug("mdns: dropped packet", "from", d.src, "err", err)
				continue
			}
			if !pk.Response {
				continue
			}
			for _, sec := range [][]Record{pk.Answers, pk.Additionals} {
				for _, r := range sec {
					col.add(r)
				}
			}
			if cfg.MaxInstances > 0 {
				if got := col.instances(); complete(got) >= cfg.MaxInstances {
					return got, nil
				}
			}
		}
	}
}

func complete(list []Instance) int {
	n := 0
	for _, in := range list {
		if len(in.Addrs) > 0 {
			n++
		}
	}
	return n
}

// collector assembles instances from records of any packet order.
type collector struct {
	typeName, ifname string
	order            []string            // instance names, lower case, first-seen order
	names            map[string]string   // lower → as received
	srv              map[string]Record   // instance → SRV
	txt              map[string][]string // instance → TXT
	addrs            map[string][]netip.Addr
}

func newCollector(typeName, ifname string) *collector {
	return &collector{
		typeName: typeName, ifname: ifname,
		names: map[string]string{}, srv: map[string]Record{},
		txt: map[string][]string{}, addrs: map[string][]netip.Addr{},
	}
}

func (c *collector) known(inst string) bool {
	_, ok := c.names[strings.ToLower(fqdn(inst))]
	return ok
}

func (c *collector) add(r Record) {
	key := strings.ToLower(fqdn(r.Name))
	switch r.Type {
	case TypePTR:
		if !sameName(r.Name, c.typeName) {
			return
		}
		inst := strings.ToLower(fqdn(r.Target))
		if !strings.HasSuffix(inst, "."+strings.ToLower(c.typeName)) {
			return // a PTR of our type must name an instance of it
		}
		if r.TTL == 0 {
			c.forget(inst)
			return
		}
		if _, ok := c.names[inst]; !ok && len(c.order) < maxInstances {
			c.names[inst] = fqdn(r.Target)
			c.order = append(c.order, inst)
		}
	case TypeSRV:
		// Accept SRV/TXT of instances of our type even before their PTR:
		// additionals may come in a separate packet.
		if !strings.HasSuffix(key, "."+strings.ToLower(c.typeName)) || (len(c.srv) >= maxInstances && !c.known(key)) {
			return
		}
		if r.TTL == 0 {
			delete(c.srv, key)
			return
		}
		c.srv[key] = r
	case TypeTXT:
		if !strings.HasSuffix(key, "."+strings.ToLower(c.typeName)) || (len(c.txt) >= maxInstances && !c.known(key)) {
			return
		}
		c.txt[key] = r.Text
	case TypeA, TypeAAAA:
		a := r.Addr
		if a.Is6() && (a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast()) {
			a = a.WithZone(c.ifname)
		}
		list := c.addrs[key]
		i := indexAddr(list, a)
		switch {
		case r.TTL == 0 && i >= 0:
			c.addrs[key] = append(list[:i], list[i+1:]...)
		case r.TTL > 0 && i < 0 && len(list) < maxAddrs && (len(c.addrs) < maxHosts || list != nil):
			c.addrs[key] = append(list, a)
		}
	}
}

func indexAddr(list []netip.Addr, a netip.Addr) int {
	for i, x := range list {
		if x == a {
			return i
		}
	}
	return -1
}

func (c *collector) forget(inst string) {
	delete(c.names, inst)
	delete(c.srv, inst)
	delete(c.txt, inst)
	for i, x := range c.order {
		if x == inst {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}

// query is the next query: the PTR question plus follow-ups for what is
// still missing.
func (c *collector) query() *Packet {
	pk := &Packet{Questions: []Question{{Name: c.typeName, Type: TypePTR}}}
	for _, inst := range c.order {
		srv, ok := c.srv[inst]
		if !ok {
			pk.Questions = append(pk.Questions, Question{Name: c.names[inst], Type: TypeSRV})
		}
		if _, ok := c.txt[inst]; !ok {
			pk.Questions = append(pk.Questions, Question{Name: c.names[inst], Type: TypeTXT})
		}
		if ok && len(c.addrs[strings.ToLower(fqdn(srv.Target))]) == 0 {
			pk.Questions = append(pk.Questions,
				Question{Name: srv.Target, Type: TypeAAAA}, Question{Name: srv.Target, Type: TypeA})
		}
		if len(pk.Questions) > maxQuestions-3 {
			break
		}
	}
	// The PTR answers already known go along for suppression (RFC 6762
	// §7.1).
	for _, inst := range c.order {
		pk.Answers = append(pk.Answers, Record{Name: c.typeName, Type: TypePTR, TTL: ttlOther, Target: c.names[inst]})
	}
	return pk
}

func (c *collector) instances() []Instance {
	var out []Instance
	for _, inst := range c.order {
		srv, ok := c.srv[inst]
		if !ok {
			continue
		}
		full := c.names[inst]
		name := strings.TrimSuffix(full, "."+c.typeName)
		if len(name) == len(full) {
			name = full[:len(full)-len(c.typeName)-1]
		}
		out = append(out, Instance{
			Name:      name,
			Service:   c.typeName,
			Host:      strings.TrimSuffix(srv.Target, "."),
			Port:      srv.Port,
			Text:      append([]string(nil), c.txt[inst]...),
			Addrs:     append([]netip.Addr(nil), c.addrs[strings.ToLower(fqdn(srv.Target))]...),
			Interface: c.ifname,
		})
	}
	return out
}
