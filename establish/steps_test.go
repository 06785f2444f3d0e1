package establish

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
)

// stepNames lists the steps of t.
func stepNames(t *Tunnel) []string {
	var names []string
	for _, s := range t.Steps {
		names = append(names, s.Step)
	}
	return names
}

// TestEstablishSteps: Establish reports every step of P1 and P3 in order,
// and they add up to no more than the call took.
func TestEstablishSteps(t *testing.T) {
	testkit.CheckLeaks(t)
	f := newFixture(t, fixtureConfig{})
	hs := userspaceSide(t)
	for _, tt := range []struct {
		ev    discovery.Event
		proto Protocol
		want  []string
	}{
		{f.usbmuxEvent(), TCP, []string{StepPairRecord, StepLockdownSession, StepStartService, StepServiceTLS, StepCDTunnel, StepTUN}},
		{f.rpEvent(), TCP, []string{StepControl, StepPairing, StepVerify, StepCreateListener, StepConnectListener, StepTLSPSK, StepCDTunnel, StepTUN}},
		{f.rpEvent(), QUIC, []string{StepControl, StepPairing, StepVerify, StepQUICKey, StepCreateListener, StepQUIC, StepCDTunnel, StepTUN}},
	} {
		opt := f.options(hs.newTUN, tt.proto)
		opt.Usbmux = f.mux
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		tn, err := Establish(ctx, tt.ev, opt)
		took := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("%s %s: %v", tt.ev.Source, tt.proto, err)
		}
		tn.Close()
		if got := stepNames(tn); !slices.Equal(got, tt.want) {
			t.Errorf("%s %s: steps %q, want %q", tt.ev.Source, tt.proto, got, tt.want)
		}
		var sum time.Duration
		for _, s := range tn.Steps {
			if s.Took < 0 {
				t.Errorf("%s: %v", s.Step, s.Took)
			}
			sum += s.Took
		}
		if sum <= 0 || sum > took {
			t.Errorf("%s %s: steps add up to %v, the call took %v", tt.ev.Source, tt.proto, sum, took)
		}
	}
}

// TestCoreDeviceProxyOneLockdownSession: with a record the device trusts,
// P1 opens lockdownd once (the session that starts CoreDeviceProxy is the
// trust check, as in pymobiledevice3); a record it no longer trusts leads
// to pairing (the simulated user taps Trust) and a second try, and with
// NoAutopair to an error naming the pair step.
func TestCoreDeviceProxyOneLockdownSession(t *testing.T) {
	testkit.CheckLeaks(t)
	f := newFixture(t, fixtureConfig{})
	hs := userspaceSide(t)
	establishP1 := func(pair lockdown.PairOptions) (*Tunnel, error) {
		opt := f.options(hs.newTUN, TCP)
		opt.Usbmux = f.mux
		opt.Pair = pair
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return Establish(ctx, f.usbmuxEvent(), opt)
	}
	tn, err := establishP1(lockdown.PairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tn.Close()
	if n := f.lockdownConns.Load(); n != 1 {
		t.Errorf("P1 with a trusted record connected to lockdownd %d times, want 1", n)
	}

	// usbmuxd's record is one the device never accepted.
	stranger, err := lockdown.NewPairRecord(testkit.Rand(11), f.lock.PublicKeyPEM(), "5A2B6F1E-0000-4000-8000-0000000000FF", f.usbmuxd.BUID(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := stranger.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f.usbmuxd.SetPairRecord(fixtureUDID, b)
	_, err = establishP1(lockdown.PairOptions{NoAutopair: true})
	var e *Error
	if !errors.As(err, &e) || e.Step != StepPair || !errors.Is(err, lockdown.ErrNotPaired) {
		t.Fatalf("untrusted record, NoAutopair: %v, want the pair step's ErrNotPaired", err)
	}
	tn, err = establishP1(lockdown.PairOptions{HostName: fixtureHostName})
	if err != nil {
		t.Fatalf("untrusted record, autopair: %v", err)
	}
	tn.Close()
	if got := stepNames(tn); !slices.Contains(got, StepPair) || got[len(got)-1] != StepTUN {
		t.Errorf("after pairing: steps %q", got)
	}
	if rb, _ := f.usbmuxd.PairRecord(fixtureUDID); string(rb) == string(b) {
		t.Error("usbmuxd still holds the untrusted record after pairing")
	}
}
