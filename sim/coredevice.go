package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/services/coredevice/appservice"
	"github.com/iosmux/iosmux/services/coredevice/deviceinfo"
	"github.com/iosmux/iosmux/services/coredevice/openstdio"
	"github.com/iosmux/iosmux/services/debugproxy"
	"github.com/iosmux/iosmux/services/instproxy"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/xpc"
)

// The developer disk image's CoreDevice services and debugserver on the
// simulated iPhone (docs/protocols/coredevice.md §6, debugproxy.md §3):
// appservice, deviceinfo, openstdiosocket and debugproxy, listed only
// while the DDI is mounted (developer.go), all acting on the one process
// table (processes.go) and the installed apps (apps.go):
//
//   - launching an installed app adds its process (started stopped when
//     asked, until a debugger or SIGCONT continues it); a running instance
//     is ended first, or returned, as terminateExisting says;
//   - signals take their default actions (processes.go); an app's console
//     (openstdiosocket) gets "hello from <bundle id>" when it first runs
//     and closes when it ends;
//   - the debugserver attaches to any process of the table, stops it,
//     continues it until it ends or the debugger interrupts, and detaches
//     when the debugger leaves.

// Entitlements of the CoreDevice services' RSD entries (coredevice.md §1).
const (
	entitleAppService = "com.apple.private.CoreDevice.canInstallCustomerContent"
	entitleDeviceInfo = "com.apple.private.CoreDevice.canRetrieveDeviceInfo"
	entitleDebugProxy = "com.apple.private.CoreDevice.canDebugApplicationsOnDevice"
)

// builtInDisplay is the one display the simulator reports (SIM values).
var builtInDisplay = deviceinfo.Display{ID: 1, Name: "Built-in Display", Primary: true, Width: 1290, Height: 2796}

// The audit token's fixed members (SIM, after vector cd12): audit user
// id, euid, egid, ruid, rgid; the pid and pid version are the process's.
const (
	auditUser    = 4294967295
	mobileUID    = 501
	auditSession = 100017
)

// coreDevice is one device's CoreDevice side.
type coreDevice struct {
	d     *Device
	stdio *openstdio.Registry
	app   *coredevice.Server
	info  *coredevice.Server
	dbg   *debugproxy.Server

	mu       sync.Mutex
	versions map[int]uint64                // pid version, per pid this boot
	nextVer  uint64                        // pid versions count up
	pending  map[string]io.ReadWriteCloser // a console for the next launch of a bundle
	consoles map[int]io.ReadWriteCloser    // a launched app's console
	greeted  map[int]chan struct{}         // its line is being written; closed once written
	traced   map[int]bool                  // a debugger is attached
	waiters  map[int][]chan ProcessEvent   // exit (and stop) watchers
	exits    map[int]appservice.ExitStatus // how ended processes ended
}

func newCoreDevice(d *Device) *coreDevice {
	c := &coreDevice{d: d, stdio: &openstdio.Registry{}}
	c.reset()
	c.app = appservice.NewServer(c, d.log)
	c.info = deviceinfo.NewServer(c, d.log)
	c.dbg = &debugproxy.Server{Target: c, Logger: d.log}
	d.diag.procs.Observe(c.processEvent)
	return c
}

// reset is a boot: the process table starts again, and so does what this
// side knows of its processes.
func (c *coreDevice) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.consoles {
		s.Close()
	}
	for _, s := range c.pending {
		s.Close()
	}
	c.versions, c.consoles, c.greeted = map[int]uint64{}, map[int]io.ReadWriteCloser{}, map[int]chan struct{}{}
	c.pending = map[string]io.ReadWriteCloser{}
	c.traced, c.waiters, c.exits = map[int]bool{}, map[int][]chan ProcessEvent{}, map[int]appservice.ExitStatus{}
}

// services are the RSD entries, each listed only while the DDI is mounted.
func (c *coreDevice) services() []DeviceService {
	return []DeviceService{
		{Name: reach.AppService.RSD, Entitlement: entitleAppService, Properties: c.app.Properties(), Serve: c.app.ServeConn, DDI: true},
		{Name: reach.DeviceInfo.RSD, Entitlement: entitleDeviceInfo, Properties: c.info.Properties(), Serve: c.info.ServeConn, DDI: true},
		{Name: reach.OpenStdioSocket.RSD, Entitlement: entitleAppService,
			Properties: xpc.NewDict("Features", xpc.Array{}, "ServiceVersion", xpc.Int64(1), "UsesRemoteXPC", xpc.Bool(true)),
			Handler:    c.stdio.Serve, DDI: true},
		{Name: reach.DebugProxy.RSD, Entitlement: entitleDebugProxy,
			Properties: xpc.NewDict("Features", xpc.Array{xpc.String(coredevice.Feature("debugserverproxy"))}, "ServiceVersion", xpc.Int64(1), "UsesRemoteXPC", xpc.Bool(true)),
			Handler:    c.dbg.Serve, DDI: true},
	}
}

// processEvent follows the table: consoles greet and close, watchers wake.
func (c *coreDevice) processEvent(ev ProcessEvent) {
	pid := ev.Process.PID
	c.mu.Lock()
	var ws []chan ProcessEvent
	var closeConsole io.Closer
	var greeting chan struct{}
	switch ev.Kind {
	case ProcessLaunched, ProcessContinued:
		if s, ok := c.pending[ev.Process.BundleID]; ok && ev.Kind == ProcessLaunched {
			delete(c.pending, ev.Process.BundleID)
			c.consoles[pid] = s
		}
		if ev.Process.State == ProcessRunning {
			c.greetLocked(ev.Process)
		}
	case ProcessStoppedEvent:
		ws = c.waiters[pid]
		delete(c.waiters, pid)
	case ProcessExitedEvent:
		ws = c.waiters[pid]
		delete(c.waiters, pid)
		c.exits[pid] = exitStatus(ev.Process)
		closeConsole, greeting = c.consoles[pid], c.greeted[pid]
		delete(c.consoles, pid)
		delete(c.greeted, pid)
		delete(c.traced, pid)
	}
	c.mu.Unlock()
	for _, w := range ws {
		w <- ev
	}
	if closeConsole != nil {
		if greeting == nil {
			closeConsole.Close()
		} else {
			go func() { <-greeting; closeConsole.Close() }() // the line first
		}
	}
}

// greetLocked writes a running app's line to its console, once.
func (c *coreDevice) greetLocked(p Process) {
	s, ok := c.consoles[p.PID]
	if _, done := c.greeted[p.PID]; !ok || done {
		return
	}
	done := make(chan struct{})
	c.greeted[p.PID] = done
	// The console's writes go to the host's socket; a host that stopped
	// reading must not hold the table up.
	go func() {
		defer close(done)
		fmt.Fprintf(s, "hello from %s\n", p.BundleID)
	}()
}

func exitStatus(p Process) appservice.ExitStatus {
	return appservice.ExitStatus{ExitCode: -int64(p.Signal)}
}

// token is p's process token as a launch reports it.
func (c *coreDevice) token(p Process) appservice.Process {
	c.mu.Lock()
	v, ok := c.versions[p.PID]
	if !ok {
		c.nextVer++
		v = c.nextVer
		c.versions[p.PID] = v
	}
	c.mu.Unlock()
	return appservice.Process{PID: int64(p.PID), PIDVersion: v, ExecutableURL: appservice.FileURL(p.Path),
		AuditToken: []uint64{auditUser, mobileUID, mobileUID, mobileUID, mobileUID, uint64(p.PID), auditSession, v}}
}

// app is a registry record as listapps reports it.
func appOf(rec instproxy.Record) (appservice.App, string) {
	str := func(k string) string { s, _ := rec.Info[k].(string); return s }
	name := str("CFBundleDisplayName")
	if name == "" {
		name = str("CFBundleName")
	}
	if name == "" {
		name = strings.TrimSuffix(rec.AppDir, ".app")
	}
	exe := str("CFBundleExecutable")
	if exe == "" {
		exe = strings.TrimSuffix(rec.AppDir, ".app")
	}
	path := rec.App().Path()
	return appservice.App{BundleID: rec.BundleID, Name: name, Version: str("CFBundleShortVersionString"), BundleVersion: str("CFBundleVersion"),
		Path: path, IsRemovable: !rec.System, IsFirstParty: rec.System, IsDeveloperApp: rec.Developer}, path + "/" + exe
}

// Apps implements appservice.Device.
func (c *coreDevice) Apps() ([]appservice.App, error) {
	recs := c.d.files.reg.Records()
	out := make([]appservice.App, len(recs))
	for i, r := range recs {
		out[i], _ = appOf(r)
	}
	return out, nil
}

// Launch implements appservice.Device.
func (c *coreDevice) Launch(ctx context.Context, r appservice.LaunchRequest) (appservice.Process, error) {
	rec, ok := c.d.files.reg.Lookup(r.BundleID)
	if !ok {
		return appservice.Process{}, appservice.NotInstalled(r.BundleID)
	}
	_, exe := appOf(rec)
	procs := c.d.diag.procs
	for _, p := range procs.Find(r.BundleID) {
		if !r.TerminateExisting {
			return c.token(p), nil
		}
		procs.Signal(p.PID, SIGKILL)
	}
	if !r.Stdio.IsZero() {
		// A socket that is gone or already taken is ignored, as a
		// device does. It waits for the launch event, which gives it
		// to the new pid (and greets it when the app runs).
		if console, ok := c.stdio.Claim(r.Stdio); ok {
			c.mu.Lock()
			if old := c.pending[r.BundleID]; old != nil {
				old.Close()
			}
			c.pending[r.BundleID] = console
			c.mu.Unlock()
		}
	}
	p, err := procs.Launch(Launch{Path: exe, BundleID: r.BundleID, Stopped: r.StartStopped})
	if err != nil {
		c.mu.Lock()
		if s := c.pending[r.BundleID]; s != nil {
			s.Close()
			delete(c.pending, r.BundleID)
		}
		c.mu.Unlock()
		return appservice.Process{}, err
	}
	return c.token(p), nil
}

// Processes implements appservice.Device.
func (c *coreDevice) Processes() ([]appservice.Process, error) {
	ps := c.d.diag.procs.List()
	out := make([]appservice.Process, len(ps))
	for i, p := range ps {
		out[i] = appservice.Process{PID: int64(p.PID), ExecutableURL: appservice.FileURL(p.Path)}
	}
	return out, nil
}

// Signal implements appservice.Device.
func (c *coreDevice) Signal(pid, sig int64) (appservice.Process, error) {
	if sig < 1 || sig > 31 {
		return appservice.Process{}, coredevice.InvalidInput("signal %d is not a signal (1–31)", sig)
	}
	procs := c.d.diag.procs
	p, ok := procs.Get(int(pid))
	if pid <= 0 || pid > 1<<31 || !ok || p.State == ProcessExited {
		return appservice.Process{}, appservice.NoSuchProcess(pid)
	}
	if err := procs.Signal(int(pid), Signal(sig)); errors.Is(err, ErrNoProcess) {
		return appservice.Process{}, appservice.NoSuchProcess(pid)
	} else if err != nil {
		return appservice.Process{}, err
	}
	return appservice.Process{PID: pid, ExecutableURL: appservice.FileURL(p.Path)}, nil
}

// watch returns a channel told of pid's next exit or stop, or false when
// it is not running. The caller must call unwatch if it stops waiting.
func (c *coreDevice) watch(pid int) (chan ProcessEvent, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.d.diag.procs.Get(pid)
	if !ok || p.State == ProcessExited {
		return nil, false
	}
	w := make(chan ProcessEvent, 1)
	c.waiters[pid] = append(c.waiters[pid], w)
	return w, true
}

func (c *coreDevice) unwatch(pid int, w chan ProcessEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.waiters[pid]
	for i, x := range ws {
		if x == w {
			c.waiters[pid] = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
}

// WaitExit implements appservice.Device.
func (c *coreDevice) WaitExit(ctx context.Context, pid int64) (appservice.ExitStatus, error) {
	for {
		w, running := c.watch(int(pid))
		if !running {
			c.mu.Lock()
			st := c.exits[int(pid)]
			c.mu.Unlock()
			return st, nil
		}
		select {
		case ev := <-w:
			if ev.Kind == ProcessExitedEvent {
				return exitStatus(ev.Process), nil
			}
			// stopped: keep waiting for the end
		case <-ctx.Done():
			c.unwatch(int(pid), w)
			return appservice.ExitStatus{}, ctx.Err()
		}
	}
}

// Uninstall implements appservice.Device: running instances end first; an
// app that is not installed is no error.
func (c *coreDevice) Uninstall(bundleID string) error {
	for _, p := range c.d.diag.procs.Find(bundleID) {
		c.d.diag.procs.Signal(p.PID, SIGKILL)
	}
	if _, err := c.d.files.reg.Uninstall(bundleID); err != nil {
		return coredevice.Errorf(coredevice.CodeInvalidRequest, "The application could not be uninstalled.", "%v", err)
	}
	return nil
}

// DeviceInfo implements deviceinfo.Device: the RSD Properties under their
// own names (SIM).
func (c *coreDevice) DeviceInfo() *xpc.Dict {
	var session xpc.UUID
	if b := c.d.currentBoot(); b != nil {
		session = b.session
	}
	return rsdProperties(c.d.id, c.d.prof, session)
}

// Displays implements deviceinfo.Device.
func (c *coreDevice) Displays() []deviceinfo.Display {
	return []deviceinfo.Display{builtInDisplay}
}

// Lookup implements debugproxy.Target.
func (c *coreDevice) Lookup(pid int64) (debugproxy.ProcessInfo, bool) {
	p, ok := c.d.diag.procs.Get(int(pid))
	if !ok || p.State == ProcessExited {
		return debugproxy.ProcessInfo{}, false
	}
	return debugproxy.ProcessInfo{PID: pid, ParentPID: 1, Name: p.Name, UID: mobileUID, GID: mobileUID}, true
}

// Attach implements debugproxy.Target.
func (c *coreDevice) Attach(pid int64) error {
	c.mu.Lock()
	if c.traced[int(pid)] {
		c.mu.Unlock()
		return fmt.Errorf("pid %d is already being debugged", pid)
	}
	c.traced[int(pid)] = true
	c.mu.Unlock()
	return c.d.diag.procs.Signal(int(pid), SIGSTOP)
}

// Resume implements debugproxy.Target.
func (c *coreDevice) Resume(ctx context.Context, pid int64) (debugproxy.Stop, error) {
	w, running := c.watch(int(pid))
	if !running {
		return debugproxy.Stop{Exited: true}, nil
	}
	procs := c.d.diag.procs
	if err := procs.Signal(int(pid), SIGCONT); err != nil {
		c.unwatch(int(pid), w)
		return debugproxy.Stop{Exited: true}, nil
	}
	select {
	case ev := <-w:
		if ev.Kind == ProcessExitedEvent {
			return debugproxy.Stop{Exited: true, Signal: int(ev.Process.Signal)}, nil
		}
		return debugproxy.Stop{Signal: int(SIGSTOP)}, nil
	case <-ctx.Done():
		c.unwatch(int(pid), w)
		procs.Signal(int(pid), SIGSTOP)
		return debugproxy.Stop{Signal: int(SIGSTOP)}, ctx.Err()
	}
}

// Detach implements debugproxy.Target: the process runs on.
func (c *coreDevice) Detach(pid int64) {
	c.mu.Lock()
	delete(c.traced, int(pid))
	c.mu.Unlock()
	c.d.diag.procs.Signal(int(pid), SIGCONT)
}

// Kill implements debugproxy.Target.
func (c *coreDevice) Kill(pid int64) {
	c.d.diag.procs.Signal(int(pid), SIGKILL)
}
