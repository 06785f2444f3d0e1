package usbmux

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
)

// Addr is where usbmuxd listens: a UNIX socket path or a TCP host:port. It
// implements net.Addr.
type Addr struct {
	Net  string // "unix" or "tcp"
	Path string // socket path for "unix", host:port for "tcp"
}

// Network returns "unix" or "tcp".
func (a Addr) Network() string { return a.Net }

// String returns the form libusbmuxd's USBMUXD_SOCKET_ADDRESS accepts
// ("UNIX:/path" or "host:port"), which ParseAddr also accepts.
func (a Addr) String() string {
	if a.Net == "unix" {
		return "UNIX:" + a.Path
	}
	return a.Path
}

// DefaultAddr is the platform's usbmuxd endpoint (usbmux.md §1): the UNIX socket
// /var/run/usbmuxd, or TCP 127.0.0.1:27015 on Windows where Apple Mobile
// Device Service listens.
func DefaultAddr() Addr {
	if runtime.GOOS == "windows" {
		return Addr{Net: "tcp", Path: "127.0.0.1:27015"}
	}
	return Addr{Net: "unix", Path: "/var/run/usbmuxd"}
}

// ParseAddr parses a usbmuxd address in every form the references use for
// USBMUXD_SOCKET_ADDRESS (usbmux.md §1):
//
//	/var/run/usbmuxd            plain path
//	UNIX:/tmp/mux, unix:/tmp/mux  libusbmuxd, appium (scheme case-insensitive)
//	unix:///tmp/mux             go-ios
//	tcp://127.0.0.1:27015       go-ios
//	127.0.0.1:27015, [::1]:27015  pmd3, idevice, libusbmuxd
//
// As in every reference, a value without a scheme that contains a colon is
// TCP; a UNIX path with a colon needs the unix: prefix.
func ParseAddr(s string) (Addr, error) {
	if s == "" {
		return Addr{}, errors.New("usbmux: empty address")
	}
	if rest, ok := cutPrefixFold(s, "unix:"); ok {
		// "unix:///p" is go-ios's URL form; "unix:/p" libusbmuxd's.
		rest = strings.TrimPrefix(rest, "//")
		if rest == "" {
			return Addr{}, fmt.Errorf("usbmux: address %q has no socket path", s)
		}
		return Addr{Net: "unix", Path: rest}, nil
	}
	if rest, ok := cutPrefixFold(s, "tcp://"); ok {
		return parseHostPort(s, rest)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return Addr{}, fmt.Errorf("usbmux: address %q: unknown scheme %q (want unix or tcp)", s, s[:i])
	}
	if strings.Contains(s, ":") {
		return parseHostPort(s, s)
	}
	return Addr{Net: "unix", Path: s}, nil
}

func parseHostPort(orig, hp string) (Addr, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return Addr{}, fmt.Errorf("usbmux: address %q: %v", orig, err)
	}
	if host == "" {
		return Addr{}, fmt.Errorf("usbmux: address %q has no host", orig)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return Addr{}, fmt.Errorf("usbmux: address %q: bad port %q", orig, port)
	}
	return Addr{Net: "tcp", Path: net.JoinHostPort(host, port)}, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
