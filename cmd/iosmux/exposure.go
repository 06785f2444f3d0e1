package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Nothing iosmux serves authenticates its clients: the tunneld APIs let
// anyone list and stop tunnels, a backend serves the device's trusted RSD
// and every service. Listening beyond loopback is the operator's choice,
// made loudly.

// warnExposed warns, in the log and on stderr, when addr (what a server
// bound, HOST:PORT) is not loopback. what names the server and risk what
// a stranger can do.
func warnExposed(a *app, what, addr, risk, safer string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() || strings.EqualFold(host, "localhost") {
		return
	}
	a.log.Warn(strings.ToUpper(what)+" IS REACHABLE FROM THE NETWORK: anyone who reaches "+addr+" "+risk+" (no authentication). "+safer, "listen", addr)
	fmt.Fprintf(a.stderr, "\n  WARNING: %s listens on %s, not loopback: anyone who reaches it %s. There is no authentication.\n\n", what, addr, risk)
}

// parsePrefixes reads client allow-list entries: CIDR prefixes or single
// addresses.
func parsePrefixes(flag string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		for _, f := range strings.Split(s, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if p, err := netip.ParsePrefix(f); err == nil {
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, usagef("--%s %q: want an address or a prefix such as 192.168.1.0/24", flag, f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out, nil
}

// parseAdvertise reads an address to advertise instead of a wildcard.
func parseAdvertise(flag, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.IsUnspecified() {
		return netip.Addr{}, usagef("--%s %q: want the address clients dial (not a wildcard)", flag, s)
	}
	return a, nil
}
