package discovery

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Link is a network interface that has an IPv6 link-local address: where a
// USB-attached iPhone's CDC-NCM function shows up (discovery.md §2.2).
type Link struct {
	Name  string
	Index int
	// Addr is the host's own link-local address on it (zone = Name).
	Addr netip.Addr
}

// LinkWatcher reports the candidate links: changed is called with the whole
// list once at start and again whenever it may have changed. Watch returns
// when ctx ends (with ctx's error) or the watcher fails.
type LinkWatcher interface {
	Watch(ctx context.Context, changed func([]Link)) error
}

// ownTunPrefixes are interface names that are tunnels, never devices: the
// TUNs iosmux and pymobiledevice3 create and macOS's own utun
// (discovery.md §2.2).
var ownTunPrefixes = []string{"tun", "utun"}

// candidate reports whether an interface may carry a device.
func candidate(name string, flags net.Flags, ignore []string) bool {
	if flags&net.FlagUp == 0 || flags&net.FlagLoopback != 0 || flags&net.FlagMulticast == 0 {
		return false
	}
	for _, p := range ownTunPrefixes {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	for _, p := range ignore {
		if p != "" && strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

// listLinks enumerates candidate links through the net package (the
// polling fallback and non-Linux systems).
func listLinks(ignore []string) ([]Link, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []Link
	for _, ifi := range ifs {
		if !candidate(ifi.Name, ifi.Flags, ignore) {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue // went away meanwhile
		}
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err == nil && p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
				out = append(out, Link{Name: ifi.Name, Index: ifi.Index, Addr: p.Addr().WithZone(ifi.Name)})
				break // pymobiledevice3 takes the first IPv6 address
			}
		}
	}
	sortLinks(out)
	return out, nil
}

func sortLinks(l []Link) {
	slices.SortFunc(l, func(a, b Link) int { return strings.Compare(a.Name, b.Name) })
}

// PollLinks lists the links every Interval (default 1 s, pymobiledevice3's
// USB monitor period) and reports changes. It is the fallback where no
// notification socket is available.
type PollLinks struct {
	Interval time.Duration
	// Ignore holds extra interface name prefixes to skip.
	Ignore []string
}

// Watch implements LinkWatcher.
func (p *PollLinks) Watch(ctx context.Context, changed func([]Link)) error {
	interval := p.Interval
	if interval <= 0 {
		interval = time.Second
	}
	var last []Link
	first := true
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		links, err := listLinks(p.Ignore)
		if err == nil && (first || !slices.Equal(links, last)) {
			changed(links)
			last, first = links, false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
