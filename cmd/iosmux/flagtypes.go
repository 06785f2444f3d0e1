package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// choicesValue is a flag whose valid values can be listed: the tree test
// tries a bad one on each, and completion offers them.
type choicesValue interface {
	pflag.Value
	Choices() []string
}

// enumValue is a flag taking one of a few words (case ignored).
type enumValue struct {
	p       *string
	allowed []string
}

func (e *enumValue) Set(s string) error {
	ls := strings.ToLower(strings.TrimSpace(s))
	if !slices.Contains(e.allowed, ls) {
		return fmt.Errorf("want %s", orList(e.allowed))
	}
	*e.p = ls
	return nil
}
func (e *enumValue) String() string    { return *e.p }
func (e *enumValue) Type() string      { return strings.Join(e.allowed, "|") }
func (e *enumValue) Choices() []string { return e.allowed }

// enumFlag adds --name (and -short) taking one of allowed, default def.
func enumFlag(cmd *cobra.Command, p *string, name, short, def string, allowed []string, usage string) {
	*p = def
	v := &enumValue{p: p, allowed: allowed}
	cmd.Flags().VarP(v, name, short, usage)
	cmd.RegisterFlagCompletionFunc(name, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return allowed, cobra.ShellCompDirectiveNoFileComp
	})
}

// enumListValue is a comma-separated list of words from a set.
type enumListValue struct {
	p       *[]string
	allowed []string
}

func (e *enumListValue) Set(s string) error {
	var out []string
	for _, w := range strings.Split(s, ",") {
		w = strings.ToLower(strings.TrimSpace(w))
		if w == "" {
			continue
		}
		if !slices.Contains(e.allowed, w) {
			return fmt.Errorf("%q is not one of %s", w, orList(e.allowed))
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return fmt.Errorf("want one or more of %s, comma separated", orList(e.allowed))
	}
	*e.p = out
	return nil
}
func (e *enumListValue) String() string    { return strings.Join(*e.p, ",") }
func (e *enumListValue) Type() string      { return strings.Join(e.allowed, ",") }
func (e *enumListValue) Choices() []string { return e.allowed }

func enumListFlag(cmd *cobra.Command, p *[]string, name string, def, allowed []string, usage string) {
	*p = def
	cmd.Flags().Var(&enumListValue{p: p, allowed: allowed}, name, usage)
	cmd.RegisterFlagCompletionFunc(name, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return allowed, cobra.ShellCompDirectiveNoFileComp
	})
}

// checkedValue is a string flag validated by check; choices are the
// well-known values (check may accept more).
type checkedValue struct {
	p       *string
	check   func(string) error
	typ     string
	choices []string
}

func (c *checkedValue) Set(s string) error {
	if err := c.check(s); err != nil {
		return err
	}
	*c.p = s
	return nil
}
func (c *checkedValue) String() string    { return *c.p }
func (c *checkedValue) Type() string      { return c.typ }
func (c *checkedValue) Choices() []string { return c.choices }

// intRange is an int flag with bounds.
type intRange struct {
	p        *int
	min, max int
}

func (r *intRange) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want a whole number from %d to %d", r.min, r.max)
	}
	if n < r.min || n > r.max {
		return fmt.Errorf("want a whole number from %d to %d", r.min, r.max)
	}
	*r.p = n
	return nil
}
func (r *intRange) String() string { return strconv.Itoa(*r.p) }
func (r *intRange) Type() string   { return "int" }

func intFlag(cmd *cobra.Command, p *int, name string, def, lo, hi int, usage string) {
	*p = def
	cmd.Flags().Var(&intRange{p: p, min: lo, max: hi}, name, usage)
}

// portFlag is an int flag from 0 (the kernel chooses) to 65535.
func portFlag(cmd *cobra.Command, p *int, name string, def int, usage string) {
	intFlag(cmd, p, name, def, 0, 65535, usage)
}

// countValue is an int flag whose value may be left out (--simulate means
// --simulate 1); normalizeArgs joins "--simulate 2" into "--simulate=2".
type countValue struct{ intRange }

func countFlag(cmd *cobra.Command, p *int, name string, lo, hi int, usage string) {
	*p = 0
	f := cmd.Flags().VarPF(&countValue{intRange{p: p, min: lo, max: hi}}, name, "", usage)
	f.NoOptDefVal = "1"
}

// hostPortValue is a TCP endpoint given as two words (HOST PORT, as
// pymobiledevice3's --rsd takes it and start-tunnel prints it) or one
// (HOST:PORT, [v6]:PORT, as tunneld's listing shows it).
type hostPortValue struct {
	host string
	port uint16
}

func (v *hostPortValue) Set(s string) error {
	s = strings.TrimSpace(s)
	var host, port string
	if h, p, ok := strings.Cut(s, " "); ok {
		host, port = strings.Trim(h, "[]"), strings.TrimSpace(p)
	} else if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else {
		return fmt.Errorf("want HOST PORT, HOST:PORT or [IPv6]:PORT")
	}
	if host == "" {
		return fmt.Errorf("no host: want HOST PORT, HOST:PORT or [IPv6]:PORT")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	v.host, v.port = host, uint16(p)
	return nil
}

func (v *hostPortValue) String() string {
	if v.host == "" {
		return ""
	}
	return v.addr()
}
func (v *hostPortValue) Type() string { return "HOST PORT" }

// given reports whether the flag was set.
func (v *hostPortValue) given() bool { return v.host != "" }

// resolve returns the endpoint's addresses: the host itself when it is an
// address (a link-local one with its zone), else what it resolves to.
func (v *hostPortValue) resolve(ctx context.Context) ([]netip.AddrPort, error) {
	if a, err := netip.ParseAddr(v.host); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(a, v.port)}, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", v.host)
	if err != nil {
		return nil, err
	}
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = netip.AddrPortFrom(a.Unmap(), v.port)
	}
	return out, nil
}

// addr is HOST:PORT for net.Dial.
func (v *hostPortValue) addr() string { return net.JoinHostPort(v.host, strconv.Itoa(int(v.port))) }

// oneWord reports whether s is already HOST:PORT (or [v6]:PORT), so the
// following word is not the port.
func (v *hostPortValue) oneWord(s string) bool {
	_, _, err := net.SplitHostPort(s)
	return err == nil
}
