// Package rsdapitest provides a fake rsdapi.Registry for tests of the HTTP
// APIs and of their clients (interop). It is a plain in-memory table.
package rsdapitest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/iosmux/iosmux/rsdapi"
)

// Registry is an in-memory rsdapi.Registry. The zero value is empty and
// ready. Start, when set, answers StartTunnel; otherwise StartTunnel
// establishes the tunnel registered with Pending for that UDID, or fails with
// rsdapi.ErrDeviceNotFound.
type Registry struct {
	// Start overrides StartTunnel's behaviour (called without the lock).
	Start func(ctx context.Context, req rsdapi.StartRequest) (rsdapi.Tunnel, error)
	// Refresh, when set, makes the registry an rsdapi.ServiceRefresher.
	Refresh func(ctx context.Context, udid string) (rsdapi.Tunnel, error)

	mu        sync.Mutex
	tunnels   []rsdapi.Tunnel
	pending   map[string]rsdapi.Tunnel
	notReady  bool
	canceled  []string
	cleared   int
	shutdowns int
	starts    []rsdapi.StartRequest
}

var _ rsdapi.Registry = (*Registry)(nil)
var _ rsdapi.Readier = (*Registry)(nil)

// New returns a registry holding ts as established tunnels.
func New(ts ...rsdapi.Tunnel) *Registry {
	return &Registry{tunnels: slices.Clone(ts)}
}

// Set replaces the established tunnels.
func (r *Registry) Set(ts ...rsdapi.Tunnel) {
	r.mu.Lock()
	r.tunnels = slices.Clone(ts)
	r.mu.Unlock()
}

// Add appends an established tunnel.
func (r *Registry) Add(t rsdapi.Tunnel) {
	r.mu.Lock()
	r.tunnels = append(r.tunnels, t)
	r.mu.Unlock()
}

// Pending registers the tunnel StartTunnel will establish for t.UDID.
func (r *Registry) Pending(t rsdapi.Tunnel) {
	r.mu.Lock()
	if r.pending == nil {
		r.pending = map[string]rsdapi.Tunnel{}
	}
	r.pending[t.UDID] = t
	r.mu.Unlock()
}

// SetReady sets what Ready reports.
func (r *Registry) SetReady(ready bool) {
	r.mu.Lock()
	r.notReady = !ready
	r.mu.Unlock()
}

// Tunnels implements rsdapi.Registry.
func (r *Registry) Tunnels() []rsdapi.Tunnel {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.tunnels)
}

// StartTunnel implements rsdapi.Registry.
func (r *Registry) StartTunnel(ctx context.Context, req rsdapi.StartRequest) (rsdapi.Tunnel, error) {
	r.mu.Lock()
	r.starts = append(r.starts, req)
	start := r.Start
	r.mu.Unlock()
	if start != nil {
		return start(ctx, req)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.pending[req.UDID]
	if !ok {
		return rsdapi.Tunnel{}, fmt.Errorf("usbmux: %s: %w", req.UDID, rsdapi.ErrDeviceNotFound)
	}
	delete(r.pending, req.UDID)
	r.tunnels = append(r.tunnels, t)
	return t, nil
}

// Cancel implements rsdapi.Registry.
func (r *Registry) Cancel(udid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.canceled = append(r.canceled, udid)
	r.tunnels = slices.DeleteFunc(r.tunnels, func(t rsdapi.Tunnel) bool { return t.UDID == udid })
}

// Clear implements rsdapi.Registry.
func (r *Registry) Clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleared++
	r.tunnels = nil
}

// Shutdown implements rsdapi.Registry.
func (r *Registry) Shutdown() {
	r.mu.Lock()
	r.shutdowns++
	r.mu.Unlock()
}

// Ready implements rsdapi.Readier.
func (r *Registry) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.notReady
}

// Calls reports what the API asked of the registry.
type Calls struct {
	Canceled  []string
	Cleared   int
	Shutdowns int
	Starts    []rsdapi.StartRequest
}

// Calls returns a copy of the recorded calls.
func (r *Registry) Calls() Calls {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Calls{slices.Clone(r.canceled), r.cleared, r.shutdowns, slices.Clone(r.starts)}
}

// Refresher wraps r so that it also implements rsdapi.ServiceRefresher with
// r.Refresh.
func (r *Registry) Refresher() rsdapi.Registry { return refresher{r} }

type refresher struct{ *Registry }

func (f refresher) RefreshServices(ctx context.Context, udid string) (rsdapi.Tunnel, error) {
	return f.Refresh(ctx, udid)
}

// Epoch is the fixed creation time of Sample tunnels.
var Epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Sample returns a deterministic USB tunnel for device i (0…65535): UDID
// 00008030-0000000000000iii style, TUN utun<i>, address fd00::<i>:1, RSD
// port 50000+i, one service in the catalog.
func Sample(i int) rsdapi.Tunnel {
	udid := fmt.Sprintf("00008030-%016X", i)
	return rsdapi.Tunnel{
		UDID:           udid,
		Key:            "usbmux-" + udid + "-USB",
		Interface:      fmt.Sprintf("utun%d", i),
		Address:        fmt.Sprintf("fd00::%x:1", i),
		RSDPort:        uint16(50000 + i%10000),
		Protocol:       "tcp",
		Path:           rsdapi.PathUsbmuxUSB,
		SerialNumber:   udid,
		DeviceID:       uint32(i + 1),
		ProductID:      0x12a8,
		ConnectionType: "USB",
		Services:       []rsdapi.Service{{Name: "com.apple.mobile.lockdown.remote.trusted", Port: 52288}},
		CatalogAt:      Epoch.Add(10 * time.Second),
		CreatedAt:      Epoch,
		UpdatedAt:      Epoch.Add(10 * time.Second),
	}
}
