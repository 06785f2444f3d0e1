package establish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/xpc"
)

// keepAlive is pmd3's setting for direct-TCP tunnel transports (tunnel.md
// §8.2): first probe after 3 s idle, then every 3 s, dead after 3.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 3 * time.Second, Interval: 3 * time.Second, Count: 3}

func (o *Options) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if o.Dial != nil {
		return o.Dial(ctx, network, address)
	}
	return Dial(ctx, network, address)
}

// Dial opens a connection with the keepalive of direct-TCP tunnel
// transports (tunnel.md §8.2): what Options.Dial defaults to.
func Dial(ctx context.Context, network, address string) (net.Conn, error) {
	d := net.Dialer{KeepAliveConfig: keepAlive}
	return d.DialContext(ctx, network, address)
}

// overRSD establishes P2 (tunnel.md §10) through the device's untrusted
// RSD at addr ("[fe80::…%if]:58783" on the USB-NCM link): RSD handshake,
// a RemoteXPC connection to the tunnel service, the pairing handshake,
// pair-verify with the stored record (ErrNotPaired asks for iosmux pair),
// createListener, then TCP+TLS-PSK or QUIC to the listener, CDTunnel, the
// TUN and the pump. The RSD and tunnel service connections stay open for
// the tunnel's life (§7) and are closed after it. ctx bounds establishment.
func overRSD(ctx context.Context, addr string, opt Options) (*Tunnel, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &Error{Device: addr, Step: StepRSD, Err: err}
	}
	who := addr
	if opt.UDID != "" {
		who = opt.UDID
	}
	nc, err := opt.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, &Error{Device: who, Step: StepRSD, Err: err}
	}
	rc, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: opt.HostUUID, XPC: &xpc.Config{Name: "rsd " + addr, Logger: opt.Logger}})
	if err != nil {
		return nil, &Error{Device: who, Step: StepRSD, Err: err}
	}
	opt.clock.mark(StepRSD)
	dev := rc.Handshake.Device()
	if dev.UDID != "" {
		who = dev.UDID
	}
	if opt.UDID != "" && dev.UDID != "" && !strings.EqualFold(opt.UDID, dev.UDID) {
		rc.Close()
		return nil, &Error{Device: addr, Step: StepRSD, Err: fmt.Errorf("this is device %s, not %s", dev.UDID, opt.UDID)}
	}
	svc, ok := rc.Handshake.Service(pairing.TunnelServiceName)
	if !ok {
		rc.Close()
		return nil, &Error{Device: who, Step: StepRSD, Err: fmt.Errorf("the RSD lists no %s", pairing.TunnelServiceName)}
	}
	dial := opt.tunnelService(net.JoinHostPort(host, strconv.Itoa(int(svc.Port))))
	if opt.UDID == "" {
		opt.UDID = dev.UDID
	}
	return startPairing(ctx, MethodRSD, who, host, dial, []io.Closer{rc}, &opt)
}

// tunnelService returns a dialer of RemoteXPC connections to the tunnel
// service at addr, as pairing transports.
func (o *Options) tunnelService(addr string) func(context.Context) (pairing.Transport, error) {
	return func(ctx context.Context) (pairing.Transport, error) {
		nc, err := o.dial(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		xc, err := xpc.Client(ctx, nc, &xpc.Config{Name: "tunnelservice " + addr, Logger: o.Logger})
		if err != nil {
			return nil, err
		}
		return pairing.NewXPC(xc), nil
	}
}

// PairRSD pairs with a device on its USB-NCM link, what Establish does
// with opt.PairRSD when no RemotePairing record verifies, as
// pymobiledevice3's tunneld does there (discovery.md §2.4 step 4:
// pair-setup, the Trust dialog, reconnect, verify): the untrusted RSD at
// addr names the tunnel service, whose RemoteXPC connections carry
// pairing.Pair. A device other than opt.UDID (when set) is refused. The
// record goes to opt.Records. opt.PairTimeout, if set, bounds it.
func PairRSD(ctx context.Context, addr string, opt Options) error {
	return pairRSD(ctx, addr, &opt)
}

func pairRSD(ctx context.Context, addr string, opt *Options) error {
	ctx, cancel := opt.withPairTimeout(ctx)
	defer cancel()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	nc, err := opt.dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("untrusted RSD: %w", err)
	}
	c, err := rsd.NewClient(ctx, nc, &rsd.ClientConfig{HostUUID: opt.HostUUID, XPC: &xpc.Config{Name: "rsd " + addr, Logger: opt.Logger}})
	if err != nil {
		return err
	}
	defer c.Close()
	udid := opt.UDID
	if dev := c.Handshake.Device(); udid != "" && dev.UDID != "" && !strings.EqualFold(udid, dev.UDID) {
		return fmt.Errorf("untrusted RSD at %s is device %s, not %s", addr, dev.UDID, udid)
	}
	svc, ok := c.Handshake.Service(pairing.TunnelServiceName)
	if !ok {
		return fmt.Errorf("the RSD lists no %s", pairing.TunnelServiceName)
	}
	log := opt.logger()
	log.Info("pairing over USB-NCM (accept the Trust dialog on the device)", "udid", udid)
	res, err := pairing.Pair(ctx, &pairing.PairConfig{
		Host:  pairing.ClientConfig{HostName: opt.HostName, Logger: opt.Logger},
		Store: opt.Records,
		Dial:  opt.tunnelService(net.JoinHostPort(host, strconv.Itoa(int(svc.Port)))),
	})
	if err != nil {
		return err
	}
	log.Info("paired over USB-NCM", "udid", udid, "record", res.Path)
	return nil
}

// remotePairing establishes P3 (tunnel.md §10) through a network
// pairing port at addr (the _remotepairing._tcp SRV target and port):
// RPPairing handshake, pair-verify with the stored record, createListener,
// then TCP+TLS-PSK or QUIC to the listener on the same host. The RPPairing
// connection stays open for the tunnel's life (§7).
func remotePairing(ctx context.Context, addr string, opt Options) (*Tunnel, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &Error{Device: addr, Step: StepControl, Err: err}
	}
	who := addr
	if opt.UDID != "" {
		who = opt.UDID
	}
	dial := func(ctx context.Context) (pairing.Transport, error) {
		nc, err := opt.dial(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return pairing.NewRPPairing(nc), nil
	}
	return startPairing(ctx, MethodRemotePairing, who, host, dial, nil, &opt)
}

// verified is a control channel after a successful pair-verify.
type verified struct {
	h    *pairing.Client
	udid string
}

// startPairing runs the RemotePairing part shared by P2 and P3 on
// connections from dial, then the data transport to host.
func startPairing(ctx context.Context, method Method, who, host string, dial func(context.Context) (pairing.Transport, error), closers []io.Closer, opt *Options) (*Tunnel, error) {
	fail := func(step string, err error) (*Tunnel, error) {
		closeAllOf(closers)
		return nil, &Error{Device: who, Step: step, Err: err}
	}
	if opt.protocol() == QUIC {
		quicKeys.prepare() // made while the control channel comes up
	}
	v, err := verify(ctx, who, dial, opt)
	if err != nil {
		closeAllOf(closers)
		return nil, err
	}
	who = v.udid
	closers = append(closers, v.h)
	pid := opt.PeerPID
	if pid == 0 {
		pid = os.Getpid()
	}
	peers := []pairing.PeerConnection{{OwningPID: int64(pid), OwningProcessName: "CoreDeviceService"}}
	if opt.protocol() == QUIC {
		return startQUIC(ctx, v, method, host, peers, closers, opt)
	}
	psk := v.h.SharedSecret()
	l, err := v.h.CreateListener(ctx, pairing.ListenerRequest{Transport: pairing.TransportTCP, Key: psk, PeerConnections: peers})
	if err != nil {
		return fail(StepCreateListener, err)
	}
	opt.clock.mark(StepCreateListener)
	opt.logger().Debug("tunnel: listener created", "udid", who, "port", l.Port)
	nc, err := opt.dial(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(l.Port)))
	if err != nil {
		return fail(StepConnectListener, err)
	}
	opt.clock.mark(StepConnectListener)
	tc := tlspsk.Client(nc, &tlspsk.Config{PSK: psk})
	if err := tc.HandshakeContext(ctx); err != nil {
		tc.Close()
		return fail(StepTLSPSK, err)
	}
	opt.clock.mark(StepTLSPSK)
	opt.logger().Debug("tunnel: TLS-PSK up", "udid", who, "suite", tlspsk.CipherSuiteName(tc.ConnectionState().CipherSuite))
	return startStream(ctx, tc, who, method, closers, opt)
}

// verify opens a control channel and pair-verifies with the device's
// record: the record named by opt.UDID or by the handshake's identifier,
// or, when there is none, every stored record in turn on a fresh
// connection each (tunnel.md §5.3).
func verify(ctx context.Context, who string, dial func(context.Context) (pairing.Transport, error), opt *Options) (*verified, error) {
	hc := &pairing.ClientConfig{HostName: opt.HostName, Identifier: opt.HostIdentifier, Logger: opt.Logger}
	if hc.HostName == "" {
		hc.HostName, _ = os.Hostname()
	}
	if hc.Identifier == "" {
		hc.Identifier = pairing.HostIdentifier(hc.HostName)
	}
	open := func() (*pairing.Client, *pairing.HandshakeInfo, error) {
		t, err := dial(ctx)
		if err != nil {
			return nil, nil, &Error{Device: who, Step: StepControl, Err: err}
		}
		opt.clock.mark(StepControl)
		h := pairing.NewClient(t, hc)
		info, err := h.Handshake(ctx)
		if err != nil {
			h.Close()
			return nil, nil, &Error{Device: who, Step: StepPairing, Err: err}
		}
		opt.clock.mark(StepPairing)
		return h, info, nil
	}
	h, info, err := open()
	if err != nil {
		return nil, err
	}
	id := opt.UDID
	if id == "" {
		id = info.Device.Identifier
	}
	if id != "" {
		who = id
	}
	if opt.UDID != "" && info.Device.Identifier != "" && !strings.EqualFold(opt.UDID, info.Device.Identifier) {
		// Over RSD the pairing identifier is the UDID; a network device
		// may name itself otherwise, so this is only logged.
		opt.logger().Debug("tunnel: pairing identifier differs from the UDID", "udid", opt.UDID, "identifier", info.Device.Identifier)
	}
	var candidates []*pairing.Record
	rec, err := opt.Records.Load(id)
	switch {
	case err == nil:
		candidates = []*pairing.Record{rec}
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, pairing.ErrBadIdentifier):
		stored, _ := opt.Records.List()
		for _, s := range stored {
			if s.Record != nil {
				candidates = append(candidates, s.Record)
			}
		}
	default:
		h.Close()
		return nil, &Error{Device: who, Step: StepVerify, Err: err}
	}
	if len(candidates) == 0 {
		h.Close()
		return nil, &Error{Device: who, Step: StepVerify, Err: notPaired(who, opt.Records.Dir)}
	}
	for i, r := range candidates {
		if i > 0 {
			// A failed verify spoils the connection (pairVerifyFailed).
			if h, _, err = open(); err != nil {
				return nil, err
			}
		}
		err = h.Verify(ctx, r.Identity(hc.Identifier))
		opt.clock.mark(StepVerify)
		if err == nil {
			return &verified{h: h, udid: who}, nil
		}
		h.Close()
		if !errors.Is(err, pairing.ErrAuthentication) {
			return nil, &Error{Device: who, Step: StepVerify, Err: err}
		}
	}
	return nil, &Error{Device: who, Step: StepVerify, Err: notPaired(who, opt.Records.Dir)}
}

func notPaired(who, dir string) error {
	return fmt.Errorf("%w: no pair record in %s verifies with device %s; run 'iosmux pair' (tap Trust on the device) first", ErrNotPaired, dir, who)
}
