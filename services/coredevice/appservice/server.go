package appservice

import (
	"context"
	"log/slog"
	"time"

	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/xpc"
)

// Device is the app registry and process table the device role acts on.
// Refusals are *coredevice.Error (NotInstalled, NoSuchProcess).
type Device interface {
	// Apps lists the installed apps.
	Apps() ([]App, error)
	// Launch starts an app and returns its full token.
	Launch(ctx context.Context, r LaunchRequest) (Process, error)
	// Processes lists the running processes.
	Processes() ([]Process, error)
	// Signal delivers a Darwin signal and returns the process's token.
	Signal(pid, signal int64) (Process, error)
	// WaitExit waits until pid ends or ctx does; a pid that is not
	// running answers at once.
	WaitExit(ctx context.Context, pid int64) (ExitStatus, error)
	// Uninstall removes an app; an app that is not installed is no error.
	Uninstall(bundleID string) error
}

// NotInstalled is the device's refusal to launch an app that is not
// installed (vector cd16's texts).
func NotInstalled(bundleID string) *coredevice.Error {
	return coredevice.Errorf(coredevice.CodeLaunchFailed, "The application failed to launch.",
		"The requested application %s is not installed.", bundleID)
}

// NoSuchProcess is the simulator's refusal for a pid that is not running
// (coredevice.md §6).
func NoSuchProcess(pid int64) *coredevice.Error {
	return coredevice.Errorf(coredevice.CodeNoSuchProcess, "No such process", "No process with pid %d is running.", pid)
}

// NewServer is the device role: the features of dev, listed in the order a
// device lists them (streaming variants are not offered).
func NewServer(dev Device, logger *slog.Logger) *coredevice.Server {
	s := &coredevice.Server{Name: "com.apple.coredevice.appservice", Logger: logger}
	s.Handle(FeatureLaunch, func(ctx context.Context, req *coredevice.Request) (xpc.Value, error) {
		r, err := ParseLaunchRequest(req.Input)
		if err != nil {
			return nil, err
		}
		p, err := dev.Launch(ctx, r)
		if err != nil {
			return nil, err
		}
		return xpc.NewDict("processToken", p.value()), nil
	})
	s.Handle(FeatureMonitor, func(ctx context.Context, req *coredevice.Request) (xpc.Value, error) {
		pid, ok := req.Input.Dict("processToken").Integer("processIdentifier")
		if !ok {
			return nil, coredevice.InvalidInput("monitorprocesstermination needs processToken.processIdentifier")
		}
		st, err := dev.WaitExit(ctx, pid)
		if err != nil {
			return nil, err
		}
		return st.value(), nil
	})
	s.Handle(FeatureUninstall, func(ctx context.Context, req *coredevice.Request) (xpc.Value, error) {
		id := req.Input.String("bundleIdentifier")
		if id == "" {
			return nil, coredevice.InvalidInput("uninstallapp needs bundleIdentifier")
		}
		if err := dev.Uninstall(id); err != nil {
			return nil, err
		}
		return xpc.NewDict(), nil
	})
	s.Handle(FeatureSignal, func(ctx context.Context, req *coredevice.Request) (xpc.Value, error) {
		pid, ok := req.Input.Dict("process").Integer("processIdentifier")
		sig, ok2 := req.Input.Integer("signal")
		if !ok || !ok2 {
			return nil, coredevice.InvalidInput("sendsignaltoprocess needs process.processIdentifier and signal")
		}
		p, err := dev.Signal(pid, sig)
		if err != nil {
			return nil, err
		}
		return SignalResult{Process: Process{PID: p.PID, ExecutableURL: p.ExecutableURL}, DeviceTimestamp: time.Now(), Signal: sig}.value(), nil
	})
	s.Handle(FeatureListProcesses, func(ctx context.Context, req *coredevice.Request) (xpc.Value, error) {
		ps, err := dev.Processes()
		if err != nil {
			return nil, err
		}
		toks := make(xpc.Array, len(ps))
		for i, p := range ps {
			toks[i] = Process{PID: p.PID, ExecutableURL: p.ExecutableURL}.value()
		}
		return xpc.NewDict("processTokens", toks), nil
	})
	s.Handle(FeatureListApps, func(ctx context.Context, req *coredevice.Request) (xpc.Value, error) {
		apps, err := dev.Apps()
		if err != nil {
			return nil, err
		}
		opts := parseListAppsOptions(req.Input)
		out := xpc.Array{}
		for _, a := range apps {
			if opts.Includes(a) {
				out = append(out, a.value())
			}
		}
		return out, nil
	})
	return s
}
