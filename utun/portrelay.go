package utun

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
)

// PortRelay makes a device behind a userspace stack look local: it listens
// on one local address (a loopback address of the device's own, in
// userspace mode) at the ports it is given — the device's RSD port and every
// port its RSD lists — and relays each connection to the same port of the
// device's address through dial, one Forwarder per port. A client that is
// told "address A, port P" (pymobiledevice3's tunneld listing, an RSD
// catalog read through A) then reaches the device at A:P without a TUN.
type PortRelay struct {
	local  netip.Addr
	remote netip.Addr
	dial   DialFunc
	listen func(network, address string) (net.Listener, error)
	log    *slog.Logger

	mu     sync.Mutex
	fwds   map[uint16]*Forwarder
	closed bool
}

// NewPortRelay returns a relay from local to remote with no port open yet.
// listen opens the local listeners; nil means net.Listen. logger may be nil.
func NewPortRelay(local, remote netip.Addr, dial DialFunc, listen func(network, address string) (net.Listener, error), logger *slog.Logger) *PortRelay {
	if listen == nil {
		listen = net.Listen
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &PortRelay{local: local, remote: remote, dial: dial, listen: listen, log: logger, fwds: map[uint16]*Forwarder{}}
}

// Local returns the address the relay listens on.
func (r *PortRelay) Local() netip.Addr { return r.local }

// Add listens on local:port and relays it to remote:port. A port already
// relayed is not opened again. The error is the listener's (EADDRINUSE,
// EADDRNOTAVAIL where the system has no such local address, EACCES for a
// privileged port), or net.ErrClosed after Close.
func (r *PortRelay) Add(port uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return net.ErrClosed
	}
	if _, ok := r.fwds[port]; ok {
		return nil
	}
	ln, err := r.listen("tcp", net.JoinHostPort(r.local.String(), strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("utun: relay port %d: %w", port, err)
	}
	r.fwds[port] = NewForwarder(ln, netip.AddrPortFrom(r.remote, port), r.dial, r.log)
	return nil
}

// AddAll adds every port and returns the errors of those that failed,
// joined; the others are relayed.
func (r *PortRelay) AddAll(ports []uint16) error {
	var errs []error
	for _, p := range ports {
		if err := r.Add(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Ports returns the relayed ports in order.
func (r *PortRelay) Ports() []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.fwds))
}

// Close stops every listener and relayed connection and returns once all
// have ended. It is idempotent.
func (r *PortRelay) Close() error {
	r.mu.Lock()
	r.closed = true
	fwds := r.fwds
	r.fwds = map[uint16]*Forwarder{}
	r.mu.Unlock()
	for _, f := range fwds {
		f.Close()
	}
	return nil
}
