package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/tunneld"
)

// backends serves tunneld --advertise backend: one backend.Backend per
// device, kept for the daemon's life so that its address (what a client
// such as CoreDeviceService was given) and, within one device boot, its
// Handshake UUID survive the tunnel being rebuilt. Each new tunnel is
// attached to it; the backend lets go of a tunnel by itself when the
// tunnel ends (Link.Done).
type backends struct {
	cfg backend.Config // template: Listen's host, StateDir, HostUUID, Logger
	log *slog.Logger
	// bridge, if set, offers every backend to CoreDeviceService's dylib.
	bridge *backend.Bridge

	mu     sync.Mutex
	closed bool
	byUDID map[string]*backend.Backend
}

func newBackends(cfg backend.Config, log *slog.Logger) (*backends, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	return &backends{cfg: cfg, log: log, byUDID: map[string]*backend.Backend{}}, nil
}

// get returns udid's backend, creating it on first use.
func (bs *backends) get(udid string) (*backend.Backend, error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.closed {
		return nil, errors.New("backend: shutting down")
	}
	if b := bs.byUDID[udid]; b != nil {
		return b, nil
	}
	b, err := backend.New(bs.cfg)
	if err != nil {
		return nil, err
	}
	bs.byUDID[udid] = b
	if bs.bridge != nil {
		bs.bridge.Add(b)
	}
	bs.log.Info("tunneld: backend serving", "udid", udid, "rsd", b.Addr().String())
	return b, nil
}

// advertise is tunneld.Config.Advertise: it attaches the tunnel to the
// device's backend and lists the backend.
func (bs *backends) advertise(ctx context.Context, t tunneld.AdvertiseRequest) (tunneld.Advert, error) {
	b, err := bs.get(t.UDID)
	if err != nil {
		return tunneld.Advert{}, err
	}
	if err := b.Attach(ctx, backend.DeviceTunnel{RSD: t.RSD, Dial: t.Dial, Done: t.Done}); err != nil {
		return tunneld.Advert{}, err
	}
	return tunneld.Advert{RSD: b.Addr(), Services: func() []rsdapi.Service { return backendServices(b) }, Refresh: b.Refresh}, nil
}

// backendServices is the catalog the backend serves now: the device's
// services at the backend's forwarder ports.
func backendServices(b *backend.Backend) []rsdapi.Service {
	h := b.Handshake()
	if h == nil {
		return nil
	}
	out := make([]rsdapi.Service, 0, len(h.Services))
	for _, s := range h.Services {
		out = append(out, rsdapi.Service{Name: s.Name, Port: s.Port})
	}
	return out
}

// Close closes every backend; later advertise calls fail.
func (bs *backends) Close() {
	bs.mu.Lock()
	bs.closed = true
	all := bs.byUDID
	bs.byUDID = nil
	bs.mu.Unlock()
	for _, b := range all {
		b.Close()
	}
}

// backendListen is the backend's RSD address on host, port chosen by the
// kernel (forwarders take ports next to it on the same host).
func backendListen(host string) string { return net.JoinHostPort(host, "0") }
