package establish

import (
	"context"
	"log/slog"
	"time"
)

// StepTime is how long one step of establishment took: the steps of a
// path one after another, named as in errors (StepLockdown, StepVerify,
// StepTLSPSK, …), so that Tunnel.Steps adds up to the whole set-up.
type StepTime struct {
	Step string
	Took time.Duration
}

// Set-up steps that never fail on their own, named only in Tunnel.Steps.
const (
	// StepPairRecord reads usbmuxd's pair record (P1 through usbmuxd).
	StepPairRecord = "pair record"
	// StepLockdownSession is the lockdown connection and StartSession
	// with its TLS (P1), which also proves the record still trusted.
	StepLockdownSession = "lockdown session"
	// StepStartService is lockdown's StartService CoreDeviceProxy (P1).
	StepStartService = "StartService"
	// StepServiceTLS is the connection to the service port and its TLS
	// (P1).
	StepServiceTLS = "service TLS"
	// StepQUICKey is the QUIC client's RSA key and certificate.
	StepQUICKey = "QUIC client key"
)

// stepClock records Tunnel.Steps as establishment goes; a nil clock (an
// internal path called without Establish) records nothing.
type stepClock struct {
	start, last time.Time
	steps       []StepTime
}

func newStepClock() *stepClock {
	now := time.Now()
	return &stepClock{start: now, last: now}
}

// mark ends step now.
func (c *stepClock) mark(step string) {
	if c == nil {
		return
	}
	now := time.Now()
	c.steps = append(c.steps, StepTime{Step: step, Took: now.Sub(c.last)})
	c.last = now
}

// log writes the steps as one debug line (total and each step), the
// production view of BenchmarkEstablishSteps.
func (c *stepClock) log(l *slog.Logger, t *Tunnel) {
	if c == nil || !l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	steps := make([]any, len(c.steps))
	for i, s := range c.steps {
		steps[i] = slog.Duration(s.Step, s.Took)
	}
	l.Debug("tunnel: set-up time by step", "udid", t.Identifier, "method", string(t.Method), "protocol", string(t.Protocol),
		"total", c.last.Sub(c.start), slog.Group("steps", steps...))
}
