package appservice

import (
	"context"
	"fmt"

	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/xpc"
)

// Client is the host role of appservice.
type Client struct {
	c *coredevice.Client
}

// New wraps a CoreDevice client of the appservice.
func New(c *coredevice.Client) *Client { return &Client{c: c} }

// Dial opens the device's appservice through o (its RSD); it fails with
// reach.ErrNotListed when the developer disk image is not mounted.
func Dial(o coredevice.XPCOpener, opts *coredevice.Options) (*Client, error) {
	c, err := coredevice.Dial(o, reach.AppService, opts)
	if err != nil {
		return nil, err
	}
	return New(c), nil
}

// Close closes the connection the client keeps.
func (c *Client) Close() error { return c.c.Close() }

func badOutput(feature string, format string, args ...any) error {
	return &coredevice.ReplyError{Feature: coredevice.Feature(feature), Msg: fmt.Sprintf(format, args...)}
}

// ListApps lists the installed apps of the kinds opts asks for.
func (c *Client) ListApps(ctx context.Context, opts ListAppsOptions) ([]App, error) {
	out, err := c.c.Invoke(ctx, FeatureListApps, opts.input())
	if err != nil {
		return nil, err
	}
	arr, ok := out.(xpc.Array)
	if !ok {
		return nil, badOutput(FeatureListApps, "output is %T, not an array", out)
	}
	apps := make([]App, 0, len(arr))
	for _, v := range arr {
		a, err := parseApp(v)
		if err != nil {
			return nil, badOutput(FeatureListApps, "%v", err)
		}
		apps = append(apps, a)
	}
	return apps, nil
}

// Launch starts the app with bundleID and returns its process token.
// errors.Is(err, coredevice.ErrNotInstalled) when it is not installed.
func (c *Client) Launch(ctx context.Context, bundleID string, opts LaunchOptions) (Process, error) {
	out, err := c.c.Invoke(ctx, FeatureLaunch, launchInput(bundleID, opts))
	if err != nil {
		return Process{}, err
	}
	d, ok := out.(*xpc.Dict)
	if !ok || !d.Has("processToken") {
		return Process{}, badOutput(FeatureLaunch, "output has no processToken: %v", out)
	}
	p, err := parseProcess(d.Get("processToken"))
	if err != nil {
		return Process{}, badOutput(FeatureLaunch, "%v", err)
	}
	return p, nil
}

// ListProcesses lists the running processes.
func (c *Client) ListProcesses(ctx context.Context) ([]Process, error) {
	out, err := c.c.Invoke(ctx, FeatureListProcesses, nil)
	if err != nil {
		return nil, err
	}
	d, ok := out.(*xpc.Dict)
	if !ok {
		return nil, badOutput(FeatureListProcesses, "output is %T, not a dictionary", out)
	}
	arr := d.Array("processTokens")
	ps := make([]Process, 0, len(arr))
	for _, v := range arr {
		p, err := parseProcess(v)
		if err != nil {
			return nil, badOutput(FeatureListProcesses, "%v", err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Signal sends a Darwin signal number to pid. errors.Is(err,
// coredevice.ErrNoSuchProcess) when nothing runs with that pid (on the
// simulator; a device's code is unconfirmed).
func (c *Client) Signal(ctx context.Context, pid, signal int64) (SignalResult, error) {
	in := xpc.NewDict("process", xpc.NewDict("processIdentifier", xpc.Int64(pid)), "signal", xpc.Int64(signal))
	out, err := c.c.Invoke(ctx, FeatureSignal, in)
	if err != nil {
		return SignalResult{}, err
	}
	d, ok := out.(*xpc.Dict)
	if !ok {
		return SignalResult{}, badOutput(FeatureSignal, "output is %T, not a dictionary", out)
	}
	r := SignalResult{Signal: signal}
	if n, ok := d.Integer("signal"); ok {
		r.Signal = n
	}
	if ts, ok := d.Get("deviceTimestamp").(xpc.Date); ok {
		r.DeviceTimestamp = ts.Time()
	}
	if p, err := parseProcess(d.Get("process")); err == nil {
		r.Process = p
	} else {
		r.Process = Process{PID: pid}
	}
	return r, nil
}

// Terminate sends SIGTERM; Kill sends SIGKILL.
func (c *Client) Terminate(ctx context.Context, pid int64) (SignalResult, error) {
	return c.Signal(ctx, pid, SIGTERM)
}

// Kill sends SIGKILL.
func (c *Client) Kill(ctx context.Context, pid int64) (SignalResult, error) {
	return c.Signal(ctx, pid, SIGKILL)
}

// WaitExit waits for pid to end (monitorprocesstermination) and returns
// its status; for a pid that is not running the device answers at once.
// ctx bounds the wait.
func (c *Client) WaitExit(ctx context.Context, pid int64) (ExitStatus, error) {
	in := xpc.NewDict("processToken", xpc.NewDict("processIdentifier", xpc.Int64(pid)))
	out, err := c.c.Invoke(ctx, FeatureMonitor, in)
	if err != nil {
		return ExitStatus{}, err
	}
	d, ok := out.(*xpc.Dict)
	if !ok || !d.Has("status") {
		return ExitStatus{}, badOutput(FeatureMonitor, "output has no status: %v", out)
	}
	st := d.Dict("status")
	s := ExitStatus{WasCoreDumpCreated: st.Bool("wasCoreDumpCreated")}
	s.ExitCode, _ = st.Integer("exitCode")
	return s, nil
}

// Uninstall removes the app; the device succeeds when it is not installed.
func (c *Client) Uninstall(ctx context.Context, bundleID string) error {
	_, err := c.c.Invoke(ctx, FeatureUninstall, xpc.NewDict("bundleIdentifier", xpc.String(bundleID)))
	return err
}
