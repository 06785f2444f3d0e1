package establish

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/usbmux"
)

// ErrUnsupportedPath means a sighting offers no tunnel path iosmux
// implements.
var ErrUnsupportedPath = errors.New("tunnel: no tunnel path for this kind of sighting")

// Establish builds a tunnel over the path a sighting describes. It is the
// one way in: tunneld's manager, start-tunnel and the backend's simulated
// device all call it, so a path added here is a path every one of them has.
//
//	usbmux         P1 through opt.Usbmux (iOS ≥ 17.4), paired over lockdown
//	               when usbmuxd has no record the device trusts (opt.Pair,
//	               lockdown.EnsurePaired), then tried again
//	ncm            P2 at s.Addr (USB-NCM); with opt.PairRSD a device no
//	               record verifies with is paired first (Trust dialog)
//	remotepairing  P3 at s.Addr (Wi-Fi)
//	mobdev2        P1 over Wi-Fi lockdown at s.Addr's host, with the
//	               classic record from opt.LockdownRecords
//
// s.UDID, when known, becomes opt.UDID unless that is set. ctx bounds the
// whole attempt; opt.PairTimeout and opt.Timeout can give pairing and the
// rest clocks of their own.
//
// The returned Tunnel's Steps say how long each step took; they also go to
// opt.Logger at debug level.
func Establish(ctx context.Context, s discovery.Event, opt Options) (*Tunnel, error) {
	clock := newStepClock()
	opt.clock = clock
	t, err := establishPath(ctx, s, opt)
	if err == nil {
		t.Steps = clock.steps
		clock.log(opt.logger(), t)
	}
	return t, err
}

// establishPath is Establish without the timing.
func establishPath(ctx context.Context, s discovery.Event, opt Options) (*Tunnel, error) {
	if opt.UDID == "" {
		opt.UDID = s.UDID
	}
	addr := net.JoinHostPort(s.Addr.Addr().String(), strconv.Itoa(int(s.Addr.Port())))
	switch s.Source {
	case discovery.SourceUsbmux:
		if opt.Usbmux == nil {
			return nil, &Error{Device: s.UDID, Step: StepUsbmux, Err: errors.New("no usbmuxd client")}
		}
		dev := usbmux.DeviceEntry{DeviceID: s.DeviceID, SerialNumber: s.UDID, ConnectionType: s.ConnectionType, ProductID: s.ProductID}
		t, err := withTimeout(ctx, &opt, func(ctx context.Context) (*Tunnel, error) { return coreDeviceProxy(ctx, opt.Usbmux, dev, opt) })
		if !errors.Is(err, errUntrusted) {
			return t, err
		}
		if err := pairUsbmux(ctx, opt.Usbmux, dev, &opt); err != nil {
			return nil, err
		}
		return withTimeout(ctx, &opt, func(ctx context.Context) (*Tunnel, error) { return coreDeviceProxy(ctx, opt.Usbmux, dev, opt) })
	case discovery.SourceNCM:
		if !s.Addr.IsValid() {
			return nil, &Error{Device: s.UDID, Step: StepRSD, Err: errors.New("sighting without an address")}
		}
		ectx, cancel := opt.withTimeout(ctx)
		defer cancel()
		t, err := overRSD(ectx, addr, opt)
		if !errors.Is(err, ErrNotPaired) || !opt.PairRSD {
			return t, err
		}
		if perr := pairRSD(ctx, addr, &opt); perr != nil {
			return nil, &Error{Device: s.UDID, Step: StepPair, Err: perr}
		}
		opt.clock.mark(StepPair)
		return overRSD(ectx, addr, opt)
	case discovery.SourceRemotePairing:
		if !s.Addr.IsValid() {
			return nil, &Error{Device: s.UDID, Step: StepControl, Err: errors.New("sighting without an address")}
		}
		ctx, cancel := opt.withTimeout(ctx)
		defer cancel()
		return remotePairing(ctx, addr, opt)
	case discovery.SourceMobdev2:
		if !s.Addr.IsValid() {
			return nil, &Error{Device: s.UDID, Step: StepLockdown, Err: errors.New("sighting without an address")}
		}
		ctx, cancel := opt.withTimeout(ctx)
		defer cancel()
		return coreDeviceProxyWiFi(ctx, s.Addr.Addr().String(), s.UDID, opt)
	}
	return nil, &Error{Device: s.UDID, Step: string(s.Source), Err: fmt.Errorf("%w (%s)", ErrUnsupportedPath, s.Source)}
}

// withTimeout runs f under opt.Timeout, if set.
func withTimeout(ctx context.Context, opt *Options, f func(context.Context) (*Tunnel, error)) (*Tunnel, error) {
	ctx, cancel := opt.withTimeout(ctx)
	defer cancel()
	return f(ctx)
}

// withTimeout bounds what follows pairing by opt.Timeout, if set.
func (o *Options) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.Timeout > 0 {
		return context.WithTimeout(ctx, o.Timeout)
	}
	return context.WithCancel(ctx)
}

// withPairTimeout bounds pairing by opt.PairTimeout, if set.
func (o *Options) withPairTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.PairTimeout > 0 {
		return context.WithTimeout(ctx, o.PairTimeout)
	}
	return context.WithCancel(ctx)
}
