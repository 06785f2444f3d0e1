package tunneld

import (
	"errors"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/utun"
)

// In userspace mode nothing outside this process can route to a tunnel's
// address: the tunnel ends in our own network stack. So that clients which
// know nothing of iosmux (pymobiledevice3 --tunnel, appium, go-ios's RSD
// client) can still use what pymobiledevice3's API lists, each device gets
// a loopback address of its own — on Linux every 127.0.0.0/8 address is
// local — where its RSD port and every port its RSD lists are relayed to
// the device (utun.PortRelay). The API then lists that address and the
// device's own ports; RSD's service ports, read through it, are relayed at
// the same address. go-ios's listing keeps the tunnel address and its
// userspace proxy (rsdapi.Tunnel.LocalAddress).

// loopbackPool hands each device a loopback address, the same one for as
// long as the daemon runs (and across runs: it is derived from the UDID),
// unless another process holds the device's port there.
type loopbackPool struct {
	listen func(network, address string) (net.Listener, error) // nil: net.Listen
	log    *slog.Logger

	mu     sync.Mutex
	byUDID map[string]netip.Addr
	owner  map[netip.Addr]string
	// last is each device's latest relay: a new tunnel for the device
	// closes it first (its old tunnel has ended, but the manager closes
	// it on another goroutine, maybe not yet), so the address is free.
	last map[string]*utun.PortRelay
	// noAliases is set once the system refused a loopback address other
	// than 127.0.0.1 (macOS without lo0 aliases): every tunnel is then
	// listed at its tunnel address, as before.
	noAliases bool
}

// loopbackCandidates bounds the addresses tried for one device.
const loopbackCandidates = 32

// errNoLoopbackAliases means the system has no loopback address but
// 127.0.0.1 to give a device.
var errNoLoopbackAliases = errors.New("this system has no loopback address but 127.0.0.1 (macOS: add one with sudo ifconfig lo0 alias 127.64.0.2)")

func newLoopbackPool(listen func(string, string) (net.Listener, error), log *slog.Logger) *loopbackPool {
	return &loopbackPool{listen: listen, log: log, byUDID: map[string]netip.Addr{}, owner: map[netip.Addr]string{},
		last: map[string]*utun.PortRelay{}}
}

// candidate is the i-th address tried for udid: in 127.64.0.0/10, away
// from the 127.0.x.x addresses systems use (127.0.0.53, 127.0.1.1), never
// ending in .0 or .255.
func candidate(udid string, i int) netip.Addr {
	h := fnv.New32a()
	h.Write([]byte(discovery.NormalizeUDID(udid)))
	v := h.Sum32() + uint32(i)*2654435761
	return netip.AddrFrom4([4]byte{127, 64 + byte(v>>24)&63, byte(v >> 16), 1 + byte(v%254)})
}

// relay opens a relay for udid's device (remote, reached through dial) on
// the device's loopback address, with rsdPort open: the address the device
// had, else the first candidate no other device holds whose rsdPort is
// free. errNoLoopbackAliases means there is none to give.
func (p *loopbackPool) relay(udid string, remote netip.Addr, rsdPort uint16, dial utun.DialFunc) (*utun.PortRelay, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.noAliases {
		return nil, errNoLoopbackAliases
	}
	if old := p.last[udid]; old != nil {
		old.Close()
		delete(p.last, udid)
	}
	try := func(a netip.Addr) (*utun.PortRelay, error) {
		r := utun.NewPortRelay(a, remote, dial, p.listen, p.log)
		if err := r.Add(rsdPort); err != nil {
			r.Close()
			return nil, err
		}
		p.last[udid] = r
		return r, nil
	}
	prev, had := p.byUDID[udid]
	if had {
		r, err := try(prev)
		if err == nil {
			return r, nil
		}
		p.log.Warn("tunneld: the device's loopback address is taken, moving it", "udid", udid, "addr", prev.String(), "err", err)
		delete(p.owner, prev)
		delete(p.byUDID, udid)
	}
	var lastErr error
	for i := range loopbackCandidates {
		a := candidate(udid, i)
		if a == prev {
			continue
		}
		if o, taken := p.owner[a]; taken && o != udid {
			continue
		}
		r, err := try(a)
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			p.noAliases = true
			return nil, errNoLoopbackAliases
		}
		if err != nil {
			lastErr = err
			continue
		}
		p.byUDID[udid], p.owner[a] = a, udid
		return r, nil
	}
	return nil, lastErr
}
