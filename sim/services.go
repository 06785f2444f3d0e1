package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/xpc"
)

// DeviceService is one service a simulated device lists in an RSD Handshake and
// serves on a port chosen per boot.
type DeviceService struct {
	// Name, Entitlement and Properties are the RSD entry (rsd.md
	// §2.4); Properties may be nil (shim entries on iOS 17).
	Name        string
	Entitlement string
	Properties  *xpc.Dict
	// Serve handles one accepted connection as it arrives (the service
	// runs its own set-up); the device closes conn when Serve returns and
	// cancels ctx when the boot ends.
	Serve func(ctx context.Context, conn net.Conn)
	// Handler, instead of Serve, serves the service's own protocol on a
	// connection positioned at its first byte: the device runs the RSD
	// set-up its name calls for (RSDCheckin for a ".shim.remote" name,
	// nothing for a raw one; reach.ServeRSD) and, when Lockdown is set,
	// offers the same handler through lockdownd's StartService under that
	// name, with service TLS. One registration, both paths.
	Handler reach.Handler
	// Lockdown is the service's lockdown name ("" = not offered through
	// StartService). Only Handler services are offered there.
	Lockdown string
	// DDI lists the service (and offers it through lockdown) only while
	// the developer disk image is mounted.
	DDI bool
	// A service with neither Serve nor Handler is not listed: the device
	// never lists a service it does not serve.
}

// served reports whether the service has a handler.
func (s DeviceService) served() bool { return s.Serve != nil || s.Handler != nil }

// serveFunc is what the service's RSD port runs per connection.
func (s DeviceService) serveFunc() func(context.Context, net.Conn) {
	if s.Handler == nil {
		return s.Serve
	}
	rs := reach.Names{RSD: s.Name, Lockdown: s.Lockdown}
	return func(ctx context.Context, c net.Conn) {
		reach.ServeRSD(ctx, c, rs, s.Handler)
	}
}

// Names of the services the simulator implements inside the tunnel besides
// real ones. They are not Apple services: tests use them to move bytes.
//
//   - SinkService reads until the host closes its sending side, then
//     answers the byte count (u64 big-endian) and the SHA-256 of what it
//     read, and closes.
//   - SourceService reads a u64 big-endian byte count N and sends N bytes
//     of SourceStream, then closes. N = 2^64-1 sends until the host closes.
//   - EchoService sends back everything it reads.
const (
	SinkService   = "com.iosmux.sim.bytesink"
	SourceService = "com.iosmux.sim.bytesource"
	EchoService   = "com.iosmux.sim.echo"
)

// Real service names the simulator uses.
const (
	LockdownTrusted   = "com.apple.mobile.lockdown.remote.trusted"
	LockdownUntrusted = "com.apple.mobile.lockdown.remote.untrusted"
)

func xpcProps(version int64, remoteXPC bool) *xpc.Dict {
	if version == 0 {
		return xpc.NewDict("UsesRemoteXPC", xpc.Bool(remoteXPC))
	}
	return xpc.NewDict("ServiceVersion", xpc.Int64(version), "UsesRemoteXPC", xpc.Bool(remoteXPC))
}

// trustedServices is the trusted RSD's table: the services the simulator
// serves of those a device lists (services.md §1.3, entries and
// entitlements as in go-ios's iOS 17.0.3 listing), the developer services
// (some only while the DDI is mounted), files and apps (apps.go), the
// simulator's byte services,
// then extra (which may replace a built-in by name). Services a real
// device lists but the simulator does not serve yet are left out.
func trustedServices(d *Device, extra []DeviceService) []DeviceService {
	raw := func(name string, serve func(context.Context, net.Conn)) DeviceService {
		return DeviceService{Name: name, Entitlement: "com.iosmux.sim", Properties: xpcProps(1, false), Serve: serve}
	}
	list := []DeviceService{
		{Name: LockdownTrusted, Entitlement: LockdownTrusted, Properties: xpcProps(1, true),
			Serve: func(ctx context.Context, c net.Conn) { d.serveLockdownShim(ctx, c, LockdownTrusted, true) }},
		{Name: LockdownUntrusted, Entitlement: LockdownUntrusted, Properties: xpcProps(1, true),
			Serve: func(ctx context.Context, c net.Conn) { d.serveLockdownShim(ctx, c, LockdownUntrusted, false) }},
	}
	list = append(list, d.developerServices()...)
	list = append(list, d.core.services()...)
	list = append(list, d.diag.services()...)
	list = append(list, d.files.services()...)
	list = append(list,
		raw(SinkService, serveSink),
		raw(SourceService, serveSource),
		raw(EchoService, serveEcho),
	)
	return mergeServices(list, extra)
}

// untrustedServices is the untrusted RSD's table, the seven entries of the
// published iOS 17.0 example (rsd.md §5); only the tunnel service
// and the untrusted lockdown shim are served, so only they are listed.
func untrustedServices(d *Device, tunnelService func(context.Context, net.Conn)) []DeviceService {
	return mergeServices([]DeviceService{
		{Name: "com.apple.fusion.remote.service", Entitlement: "com.apple.fusion.remote.service", Properties: xpcProps(1, true)},
		{Name: "com.apple.gputools.remote.agent", Entitlement: "com.apple.private.gputoolstransportd", Properties: xpcProps(1, true)},
		{Name: "com.apple.internal.dt.coredevice.untrusted.tunnelservice", Entitlement: "com.apple.dt.coredevice.tunnelservice.client",
			Properties: xpcProps(2, true), Serve: tunnelService},
		{Name: "com.apple.mobile.insecure_notification_proxy.remote", Entitlement: "com.apple.mobile.insecure_notification_proxy.remote", Properties: xpcProps(1, true)},
		{Name: "com.apple.mobile.insecure_notification_proxy.shim.remote", Entitlement: LockdownUntrusted},
		{Name: LockdownUntrusted, Entitlement: LockdownUntrusted, Properties: xpcProps(1, true),
			Serve: func(ctx context.Context, c net.Conn) { d.serveLockdownShim(ctx, c, LockdownUntrusted, false) }},
		{Name: "com.apple.osanalytics.logTransfer", Entitlement: "com.apple.ReportCrash.antenna-access", Properties: xpcProps(0, true)},
	}, d.diag.untrustedRSDServices())
}

func mergeServices(list, extra []DeviceService) []DeviceService {
	for _, e := range extra {
		if i := slices.IndexFunc(list, func(s DeviceService) bool { return s.Name == e.Name }); i >= 0 {
			list[i] = e
		} else {
			list = append(list, e)
		}
	}
	return list
}

// serveLockdownShim is lockdown over RSD (rsd.md §4.2): RSDCheckin, then
// lockdown requests in clear without a session. The trusted shim answers every value; the untrusted one only the keys a
// device shows before pairing. Unknown requests get an Error reply (the
// real device's text for them is UNCONFIRMED; SIM).
func (d *Device) serveLockdownShim(ctx context.Context, nc net.Conn, name string, trusted bool) {
	sc, _, err := lockdown.ShimServer(ctx, nc, name)
	if err != nil {
		d.log.Debug("sim: lockdown shim checkin", "udid", d.id.UDID, "service", name, "err", err)
		return
	}
	for {
		var req map[string]any
		if err := sc.Receive(ctx, &req); err != nil {
			return
		}
		reply := d.lockdownShimReply(req, trusted)
		if err := sc.Send(ctx, reply); err != nil {
			return
		}
	}
}

func (d *Device) lockdownShimReply(req map[string]any, trusted bool) map[string]any {
	r, _ := req["Request"].(string)
	reply := map[string]any{"Request": r}
	switch r {
	case "QueryType":
		reply["Type"] = lockdown.TypeLockdown
	case "GetValue":
		domain, _ := req["Domain"].(string)
		key, _ := req["Key"].(string)
		if domain != "" {
			reply["Domain"] = domain
		}
		if key != "" {
			reply["Key"] = key
		}
		v, ok := d.shimValue(domain, key, trusted)
		if !ok {
			reply["Error"] = "MissingValue"
			break
		}
		reply["Value"] = v
	default:
		reply["Error"] = "UnsupportedRequest"
	}
	return reply
}

// shimValue reads one value, or a whole domain when key is empty, from
// lockdownd's values (which the device's own state changes, such as the
// Developer Mode status, update).
func (d *Device) shimValue(domain, key string, trusted bool) (any, bool) {
	dom, ok := d.ld.Domain(domain)
	if !ok || !trusted && domain != "" {
		return nil, false
	}
	// The key lockdownd adds for pairing is not part of the shim's set.
	delete(dom, "DevicePublicKey")
	visible := func(k string) bool { return trusted || slices.Contains(lockdown.DefaultPublicKeys, k) }
	if key != "" {
		v, ok := dom[key]
		return v, ok && visible(key)
	}
	out := map[string]any{}
	for k, v := range dom {
		if visible(k) {
			out[k] = v
		}
	}
	return out, true
}

// serveSink implements SinkService.
func serveSink(_ context.Context, c net.Conn) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, c, make([]byte, 64<<10))
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	var out [40]byte
	binary.BigEndian.PutUint64(out[:8], uint64(n))
	h.Sum(out[8:8])
	c.Write(out[:])
}

// serveSource implements SourceService.
func serveSource(_ context.Context, c net.Conn) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	n := binary.BigEndian.Uint64(hdr[:])
	src := io.Reader(SourceStream())
	if n != ^uint64(0) {
		src = io.LimitReader(src, int64(min(n, 1<<62)))
	}
	io.CopyBuffer(c, src, make([]byte, 64<<10))
}

// serveEcho implements EchoService.
func serveEcho(_ context.Context, c net.Conn) {
	io.CopyBuffer(c, c, make([]byte, 64<<10))
}

// SourceStream returns the endless deterministic byte stream SourceService
// sends, for a host to compare against: the first MiB of ChaCha8 with a
// fixed key, repeated. Repeating it makes serving the stream cost a copy
// rather than a cipher (generating it was a third of the kernel-end
// simulator's CPU in BenchmarkManyDevices); a stream shifted by a whole
// MiB would go unnoticed.
func SourceStream() io.Reader { return &sourceReader{} }

// sourcePeriod is the length of SourceStream's repeating block.
const sourcePeriod = 1 << 20

var sourceBlock = sync.OnceValue(func() []byte {
	var seed [32]byte
	copy(seed[:], "iosmux sim byte source, seed v1")
	b := make([]byte, sourcePeriod)
	rand.NewChaCha8(seed).Read(b)
	return b
})

type sourceReader struct{ off int }

func (r *sourceReader) Read(p []byte) (int, error) {
	blk := sourceBlock()
	n := 0
	for n < len(p) {
		c := copy(p[n:], blk[r.off:])
		n += c
		r.off = (r.off + c) % sourcePeriod
	}
	return n, nil
}
