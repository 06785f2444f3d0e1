package establish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/xpc"
	"golang.zx2c4.com/wireguard/tun"
)

// Protocol is the data transport of a RemotePairing tunnel (P2/P3).
type Protocol string

// Protocols. P1 is always TCP (a TLS stream).
const (
	TCP  Protocol = "tcp"
	QUIC Protocol = "quic"
)

// Method names how a tunnel was established: P1, P2 or P3 of tunnel.md §1
// (the path a sighting takes to its device is another thing: rsdapi.Path).
type Method string

// Methods.
const (
	MethodCoreDeviceProxy Method = "CoreDeviceProxy"       // P1
	MethodRSD             Method = "RemotePairing-RSD"     // P2 (USB-NCM)
	MethodRemotePairing   Method = "RemotePairing-network" // P3 (Wi-Fi)
)

// Options configures establishment. The zero value makes a kernel TUN and
// a TCP tunnel; the RemotePairing paths also need Records and HostName.
type Options struct {
	// NewTUN builds the host's side from the handshake's parameters; nil
	// means KernelTUN(""). For userspace mode pass a closure around
	// utun.NewNetstack.
	NewTUN func(tunnel.Params) (tun.Device, error)
	// Protocol is the P2/P3 transport; "" means TCP. QUIC works on iOS
	// 17.0–18.1 only (SupportsQUIC).
	Protocol Protocol
	// UDID, when set, is the device expected: a device that says otherwise
	// is refused, and it names the pair record. Empty accepts the device
	// that answers and uses the identifier from its pairing handshake.
	UDID string
	// Records holds the RemotePairing pair records (iosmux pair).
	Records pairing.RecordStore
	// HostName is this host's name for pairing (sendingHost; the default
	// host identifier is derived from it as pymobiledevice3 does).
	HostName string
	// HostIdentifier overrides the identifier when a record has none.
	HostIdentifier string
	// HostUUID, when set, makes the untrusted RSD client announce this
	// host (rsd.ClientConfig.HostUUID).
	HostUUID xpc.UUID
	// PeerPID is sent in createListener's peerConnectionsInfo with the
	// process name CoreDeviceService (remotepairing.md §6.4); 0 means
	// this process.
	PeerPID int
	// Dial opens TCP connections (control channel, TLS-PSK listener); nil
	// means a net.Dialer with the keepalive of tunnel.md §8.2 (idle 3 s,
	// interval 3 s, 3 probes).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// ListenPacket opens the QUIC client's UDP socket; nil means
	// net.ListenPacket.
	ListenPacket func(network, address string) (net.PacketConn, error)
	// KeyLog receives TLS secrets of the QUIC handshake (NSS key log, the
	// --secrets of pymobiledevice3); debug only.
	KeyLog io.Writer
	// MaxIdleTimeout is the QUIC idle timeout; 0 means 30 s. PINGs go out
	// every half of it (tunnel.md §6, §8.2).
	MaxIdleTimeout time.Duration
	// MaxSendPacket and Probe are passed to the pump (Config).
	MaxSendPacket int
	Probe         tunnel.ProbeConfig
	// Logger receives progress at debug level (and a new pairing at
	// info); nil discards.
	Logger *slog.Logger

	// Usbmux is usbmuxd, the way to devices it lists (P1 through
	// usbmuxd); nil fails usbmux sightings.
	Usbmux *usbmux.Client
	// Pair says how P1 through usbmuxd pairs a device that usbmuxd holds
	// no trusted record for (lockdown.EnsurePaired: the Trust dialog, or
	// with NoAutopair an error naming 'iosmux lockdown pair').
	Pair lockdown.PairOptions
	// PairRSD pairs over the USB-NCM link (pair-setup, the Trust dialog)
	// a device no RemotePairing record verifies with, then tries again,
	// as pymobiledevice3's tunneld does there (discovery.md §2.4); the
	// record goes to Records. Over Wi-Fi nothing is ever paired.
	PairRSD bool
	// LockdownRecords holds the classic pair records P1 over Wi-Fi
	// lockdown (mobdev2) uses; usbmuxd is not asked there.
	LockdownRecords lockdown.RecordStore
	// PairTimeout, if set, bounds pairing (a person has to find the
	// iPhone and tap Trust) and Timeout what follows it, each on its own
	// clock within ctx; 0 leaves ctx alone in charge.
	PairTimeout, Timeout time.Duration

	// clock times the steps (Establish sets it).
	clock *stepClock
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o *Options) protocol() Protocol {
	if o.Protocol == "" {
		return TCP
	}
	return o.Protocol
}

func (o *Options) newTUN() func(tunnel.Params) (tun.Device, error) {
	if o.NewTUN == nil {
		return tunnel.KernelTUN("")
	}
	return o.NewTUN
}

// Steps of establishment, named in errors.
const (
	StepUsbmux          = "usbmuxd"
	StepLockdown        = "lockdown CoreDeviceProxy"
	StepRSD             = "untrusted RSD"
	StepControl         = "tunnel service connection"
	StepPairing         = "pairing handshake"
	StepVerify          = "pair-verify"
	StepCreateListener  = "createListener"
	StepConnectListener = "tunnel listener connection"
	StepTLSPSK          = "TLS-PSK handshake"
	StepQUIC            = "QUIC handshake"
	StepCDTunnel        = "CDTunnel handshake"
	StepTUN             = "TUN"
	StepPair            = "pair"
)

// Error is an establishment failure: which device, at which step.
type Error struct {
	// Device is the UDID, or the address when the device is not known yet.
	Device string
	Step   string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("tunnel: device %s: %s: %v", e.Device, e.Step, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrNotPaired means no RemotePairing record verifies with the device; the
// error text tells the user to run iosmux pair.
var ErrNotPaired = errors.New("not paired")

// ErrNoCoreDeviceProxy means lockdown does not offer CoreDeviceProxy: iOS
// before 17.4 (tunnel.md §1). Retrying cannot help; the text names what
// works instead.
var ErrNoCoreDeviceProxy = errors.New("the device has no CoreDeviceProxy (iOS 17.4 or later has it; this is 17.0-17.3): tunnel over its USB-NCM link instead, 'iosmux start-tunnel --connection usb' after 'iosmux pair --udid UDID' (tunneld does so by itself with --usb, on by default)")

// ErrQUICUnsupported means the QUIC listener could not be reached: iOS 18.2
// removed it (tunnel.md §1, pymobiledevice3's wording).
var ErrQUICUnsupported = errors.New("iOS 18.2+ removed QUIC protocol support; use TCP (--protocol tcp)")

// Tunnel is an established host-side tunnel: the pump, the TUN and the
// connections that must stay open with it (tunnel.md §7).
type Tunnel struct {
	// Identifier is the device's UDID.
	Identifier string
	Method     Method
	Protocol   Protocol
	// Params is the CDTunnel response (addresses, MTU, RSD port); MTU is
	// the one the TUN uses.
	Params tunnel.Params
	// Interface is the TUN's name ("netstack" in userspace mode).
	Interface string
	// Steps is how long each step of establishment took, in order
	// (Establish fills it in).
	Steps []StepTime

	pump    *tunnel.Pump
	closers []io.Closer // closed after the pump, last first
	log     *slog.Logger

	done chan struct{}
}

// newTunnel wraps a running pump; closers stay open until it ends.
func newTunnel(id string, method Method, proto Protocol, params tunnel.Params, dev tun.Device, pump *tunnel.Pump, closers []io.Closer, log *slog.Logger) *Tunnel {
	name, _ := dev.Name()
	t := &Tunnel{Identifier: id, Method: method, Protocol: proto, Params: params, Interface: name,
		pump: pump, closers: closers, log: log, done: make(chan struct{})}
	go t.watch()
	return t
}

// watch tears the rest down once the pump has stopped (tunnel.md §8.1: TUN
// and transport first, then the control connection).
func (t *Tunnel) watch() {
	<-t.pump.Done()
	closeAllOf(t.closers)
	t.log.Debug("tunnel: ended", "udid", t.Identifier, "err", t.pump.Err())
	close(t.done)
}

func closeAllOf(cs []io.Closer) {
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i].Close()
	}
}

// RSD returns the trusted RSD endpoint inside the tunnel.
func (t *Tunnel) RSD() netip.AddrPort {
	return netip.AddrPortFrom(t.Params.ServerAddress, t.Params.ServerRSDPort)
}

// Done is closed once the tunnel has ended and everything it held is
// closed: TUN, transport, control connection.
func (t *Tunnel) Done() <-chan struct{} { return t.done }

// Err says why the tunnel ended (the pump's error: ErrDead, the transport's
// error, net.ErrClosed after Close); nil while it runs.
func (t *Tunnel) Err() error {
	select {
	case <-t.done:
		return t.pump.Err()
	default:
		return nil
	}
}

// Stats returns the pump's counters.
func (t *Tunnel) Stats() tunnel.Stats { return t.pump.Stats() }

// Close ends the tunnel and returns once everything is closed. It is
// idempotent.
func (t *Tunnel) Close() error {
	t.pump.Close()
	<-t.done
	return nil
}

// supportsCoreDeviceProxy reports whether an iOS version has P1: 17.4 and
// later (tunnel.md §1; go-ios's "> 17.4" is a quirk we do not copy).
func supportsCoreDeviceProxy(version string) bool {
	return versionAtLeast(version, 17, 4)
}

// SupportsQUIC reports whether an iOS version still has the QUIC tunnel
// listener: 17.0 up to 18.1 (tunnel.md §1).
func SupportsQUIC(version string) bool {
	return versionAtLeast(version, 17, 0) && !versionAtLeast(version, 18, 2)
}

func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	maj, err := strconv.Atoi(parts[0])
	if err != nil {
		return false
	}
	mnr := 0
	if len(parts) > 1 {
		if mnr, err = strconv.Atoi(parts[1]); err != nil {
			return false
		}
	}
	return maj > major || maj == major && mnr >= minor
}

// startStream is the common end of the byte-stream paths (P1, TLS-PSK):
// CDTunnel on conn, the TUN, the pump. conn and closers are owned from the
// call on and closed on failure.
func startStream(ctx context.Context, conn io.ReadWriteCloser, id string, method Method, closers []io.Closer, opt *Options) (*Tunnel, error) {
	var dev tun.Device
	newTUN := opt.newTUN()
	pump, params, err := tunnel.StartClient(ctx, conn, tunnel.ClientConfig{
		NewTUN: func(p tunnel.Params) (tun.Device, error) {
			opt.clock.mark(StepCDTunnel)
			d, err := newTUN(p)
			dev = d
			return d, err
		},
		MaxSendPacket: opt.MaxSendPacket,
		Probe:         opt.Probe,
		Logger:        opt.Logger,
	})
	if err != nil {
		closeAllOf(closers)
		step := StepCDTunnel
		if params.ClientAddress.IsValid() {
			step = StepTUN
		}
		return nil, &Error{Device: id, Step: step, Err: err}
	}
	opt.clock.mark(StepTUN)
	return newTunnel(id, method, TCP, params, dev, pump, closers, opt.logger()), nil
}
