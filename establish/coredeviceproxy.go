package establish

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

// coreDeviceProxy establishes P1 (tunnel.md §4, §10) with a device
// attached through usbmuxd (USB or usbmuxd's network devices): usbmuxd's
// pair record, a lockdown session with it, StartService CoreDeviceProxy, a
// new usbmuxd connection to its port with the service TLS, then CDTunnel,
// the TUN and the pump. The service connection is the whole tunnel;
// nothing else stays open. iOS before 17.4 answers with
// ErrNoCoreDeviceProxy. A device usbmuxd holds no record for, or one that
// no longer trusts it, fails with errUntrusted (Establish pairs then, and
// tries again). ctx bounds establishment only.
//
// The session that starts the service is also the check that the record
// is trusted, as in pymobiledevice3 (one lockdown client validates the
// pairing and starts the service): a separate check session first
// (lockdown.EnsurePaired) doubled the lockdown work, 8 of 19 ms of P1's
// set-up in BenchmarkEstablishSteps.
func coreDeviceProxy(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry, opt Options) (*Tunnel, error) {
	udid := dev.UDID()
	fail := func(err error) (*Tunnel, error) {
		if errors.Is(err, lockdown.ErrInvalidService) {
			err = fmt.Errorf("%w: %w", ErrNoCoreDeviceProxy, err)
		}
		return nil, &Error{Device: udid, Step: StepLockdown, Err: fmt.Errorf("lockdown: %s: %w", udid, err)}
	}
	rec, err := lockdown.ReadPairRecord(ctx, mux, udid)
	if errors.Is(err, usbmux.ErrNoPairRecord) {
		return nil, &Error{Device: udid, Step: StepPair, Err: fmt.Errorf("%w: %w", errUntrusted, err)}
	}
	if err != nil {
		return fail(fmt.Errorf("read pair record: %w", err))
	}
	opt.clock.mark(StepPairRecord)
	lc, err := lockdown.DialUsbmux(ctx, mux, dev.DeviceID, lockdown.ClientConfig{})
	if err != nil {
		return fail(err)
	}
	defer lc.Close()
	if _, err := lc.StartSession(ctx, rec); err != nil {
		if errors.Is(err, lockdown.ErrInvalidHostID) {
			return nil, &Error{Device: udid, Step: StepPair, Err: fmt.Errorf("%w: %w", errUntrusted, err)}
		}
		return fail(err)
	}
	opt.clock.mark(StepLockdownSession)
	info, err := lc.StartService(ctx, lockdown.CoreDeviceProxy, nil)
	if err != nil {
		return fail(err)
	}
	opt.clock.mark(StepStartService)
	raw, err := mux.Connect(ctx, dev.DeviceID, info.Port)
	if err != nil {
		return fail(fmt.Errorf("reach %s: %w", info.Name, err))
	}
	conn, err := serviceTLSBatched(ctx, raw, info, rec)
	if err != nil {
		return fail(err)
	}
	opt.clock.mark(StepServiceTLS)
	opt.logger().Debug("tunnel: CoreDeviceProxy service connected", "udid", udid)
	return startStream(ctx, conn, udid, MethodCoreDeviceProxy, nil, &opt)
}

// errUntrusted means usbmuxd holds no pair record the device trusts: P1
// pairs (pairUsbmux) and tries again.
var errUntrusted = errors.New("no trusted pair record in usbmuxd")

// pairUsbmux makes sure usbmuxd holds a pair record dev trusts, pairing
// over lockdown (the Trust dialog) when it does not, as pymobiledevice3
// does with autopair on (lockdown.EnsurePaired with opt.Pair, which also
// gives usbmuxd a record from opt.Pair.Store; NoAutopair fails instead).
// opt.PairTimeout, if set, bounds it.
func pairUsbmux(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry, opt *Options) error {
	ctx, cancel := opt.withPairTimeout(ctx)
	defer cancel()
	udid := dev.UDID()
	_, paired, err := lockdown.EnsurePaired(ctx, mux, dev, opt.Pair)
	if err != nil {
		return &Error{Device: udid, Step: StepPair, Err: err}
	}
	opt.clock.mark(StepPair)
	if paired {
		opt.logger().Info("paired over lockdown; usbmuxd keeps the record", "udid", udid)
	}
	return nil
}

// lockdownDialTimeout bounds each TCP connection of P1 over Wi-Fi.
const lockdownDialTimeout = 5 * time.Second

// coreDeviceProxyWiFi is P1 over Wi-Fi lockdown (discovery.md §5): TCP to
// lockdownd at host with the classic record opt.LockdownRecords holds for
// udid, StartService CoreDeviceProxy, the service TLS on a second TCP
// connection, then CDTunnel, the TUN and the pump.
func coreDeviceProxyWiFi(ctx context.Context, host, udid string, opt Options) (*Tunnel, error) {
	fail := func(step string, err error) (*Tunnel, error) {
		return nil, &Error{Device: udid, Step: step, Err: err}
	}
	if opt.LockdownRecords == nil {
		return fail(StepPair, errors.New("no lockdown pair record for Wi-Fi: no record folder"))
	}
	rec, err := opt.LockdownRecords.LoadRecord(udid)
	if err != nil {
		return fail(StepPair, fmt.Errorf("no lockdown pair record for Wi-Fi: %w", err))
	}
	d := net.Dialer{Timeout: lockdownDialTimeout, KeepAliveConfig: keepAlive}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(lockdown.Port))))
	if err != nil {
		return fail(StepLockdown, err)
	}
	lc := lockdown.NewClient(nc, lockdown.ClientConfig{})
	defer lc.Close()
	if _, err := lc.StartSession(ctx, rec); err != nil {
		return fail(StepLockdown, err)
	}
	opt.clock.mark(StepLockdownSession)
	info, err := lc.StartService(ctx, lockdown.CoreDeviceProxy, nil)
	if err != nil {
		return fail(StepLockdown, err)
	}
	opt.clock.mark(StepStartService)
	sc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(info.Port))))
	if err != nil {
		return fail(StepLockdown, err)
	}
	conn, err := serviceTLSBatched(ctx, sc, info, rec)
	if err != nil {
		return fail(StepLockdown, err)
	}
	opt.clock.mark(StepServiceTLS)
	return startStream(ctx, conn, udid, MethodCoreDeviceProxy, nil, &opt)
}
