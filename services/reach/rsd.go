package reach

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// RSDConfig configures NewRSD.
type RSDConfig struct {
	// HostUUID is this host's stable RSD identity (rsd.LoadOrCreateHostUUID).
	// iOS 27.2 moves every service port when a tunnel's RSD peer presents a
	// new UUID, so every session one host opens must carry the same one.
	// Zero sends no host Handshake (as go-ios and appium do).
	HostUUID xpc.UUID
	// Label names the client in RSDCheckin; "" means "iosmux".
	Label string
	// Logger receives the XPC connections' debug logs; nil discards.
	Logger *slog.Logger
}

// RSD opens services listed in a device's trusted RSD Handshake: the
// device's own RSD inside a tunnel (kernel TUN or userspace stack) or an
// RSD that forwards to it, such as iosmux's backend. The Handshake is read
// when the RSD is created and again by Refresh; services are dialled at
// the RSD's host and the ports it lists. Safe for concurrent use.
type RSD struct {
	dial DialFunc
	addr netip.AddrPort
	cfg  RSDConfig

	mu sync.Mutex
	h  *rsd.Handshake
}

var _ Opener = (*RSD)(nil)

// NewRSD reads the Handshake at addr through dial. The discovery session
// is closed once read: a device keeps one RSD session per tunnel, and
// holding it would displace tunneld's or the backend's.
func NewRSD(ctx context.Context, dial DialFunc, addr netip.AddrPort, cfg RSDConfig) (*RSD, error) {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	if cfg.Label == "" {
		cfg.Label = "iosmux"
	}
	r := &RSD{dial: dial, addr: addr, cfg: cfg}
	if _, err := r.Refresh(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Refresh reads a fresh Handshake: after a developer disk image is mounted
// the device lists its services only in a new RSD session.
func (r *RSD) Refresh(ctx context.Context) (*rsd.Handshake, error) {
	nc, err := r.dial(ctx, "tcp", r.addr.String())
	if err != nil {
		return nil, fmt.Errorf("reach: RSD at %s: connect: %w", r.addr, err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: r.cfg.HostUUID,
		XPC: &xpc.Config{Name: "rsd " + r.addr.String(), Logger: r.cfg.Logger}})
	if err != nil {
		return nil, fmt.Errorf("reach: RSD at %s: %w", r.addr, err)
	}
	c.Close()
	r.mu.Lock()
	r.h = c.Handshake
	r.mu.Unlock()
	return c.Handshake, nil
}

// Handshake is the Handshake as last read.
func (r *RSD) Handshake() *rsd.Handshake {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.h
}

// Addr is the RSD port's address.
func (r *RSD) Addr() netip.AddrPort { return r.addr }

// UDID is the UniqueDeviceID the Handshake reports.
func (r *RSD) UDID() string { return r.Handshake().Device().UDID }

// Lookup returns s's entry in the Handshake as last read.
func (r *RSD) Lookup(s Names) (rsd.Service, error) {
	if s.RSD == "" {
		return rsd.Service{}, &NotListedError{UDID: r.UDID(), Service: s.String(), Path: "RSD",
			Err: errors.New("it has no RSD name; reach it through usbmuxd lockdown")}
	}
	e, ok := r.Handshake().Service(s.RSD)
	if !ok {
		return rsd.Service{}, &NotListedError{UDID: r.UDID(), Service: s.RSD, Path: "RSD"}
	}
	return e, nil
}

// dialService connects to s's port.
func (r *RSD) dialService(ctx context.Context, s Names) (net.Conn, error) {
	e, err := r.Lookup(s)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(r.addr.Addr().String(), strconv.Itoa(int(e.Port)))
	nc, err := r.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("reach: %s: %s at %s: connect: %w", r.UDID(), s.RSD, addr, err)
	}
	return nc, nil
}

// Open connects to a shim or raw service; for a shim it runs RSDCheckin
// and consumes both replies. RemoteXPC services are opened with OpenXPC.
func (r *RSD) Open(ctx context.Context, s Names) (net.Conn, error) {
	kind := s.Kind()
	if kind == XPC && s.RSD != "" {
		return nil, fmt.Errorf("reach: %s is a RemoteXPC service: use OpenXPC", s.RSD)
	}
	nc, err := r.dialService(ctx, s)
	if err != nil {
		return nil, err
	}
	if kind == Raw {
		return nc, nil
	}
	sc, err := lockdown.ShimClient(ctx, nc, s.RSD, r.cfg.Label, nil)
	if err != nil {
		var ce *lockdown.CheckinError
		if errors.As(err, &ce) {
			return nil, &NotListedError{UDID: r.UDID(), Service: s.RSD, Path: "RSD", Err: err}
		}
		return nil, fmt.Errorf("reach: %s: %w", r.UDID(), err)
	}
	return sc.Conn(), nil
}

// OpenXPC connects to a RemoteXPC service and runs the h2c set-up. cfg may
// be nil.
func (r *RSD) OpenXPC(ctx context.Context, s Names, cfg *xpc.Config) (*xpc.Conn, error) {
	if k := s.Kind(); k != XPC {
		return nil, fmt.Errorf("reach: %s is a %s service: use Open", s.RSD, k)
	}
	nc, err := r.dialService(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &xpc.Config{Logger: r.cfg.Logger}
	}
	if cfg.Name == "" {
		c := *cfg
		c.Name = s.RSD
		cfg = &c
	}
	conn, err := xpc.Client(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("reach: %s: %s: %w", r.UDID(), s.RSD, err)
	}
	return conn, nil
}
