package sim

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/services/crash"
	"github.com/iosmux/iosmux/services/notify"
	"github.com/iosmux/iosmux/services/ostrace"
	"github.com/iosmux/iosmux/services/syslog"
	"howett.net/plist"
)

// diagnostics is what a device keeps for its logs and reports: the process
// table, the log, the notification centre and the crash folder, and the
// device roles that serve them (syslog_relay, os_trace_relay,
// notification_proxy, crashreportmover).
type diagnostics struct {
	d       *Device
	ddi     atomic.Bool // the DDI is mounted, as last logged
	procs   *Processes
	logs    *Logs
	bus     *notify.Bus
	crashes *crashes
	ostrace *ostrace.Server
}

func newDiagnostics(d *Device) (*diagnostics, error) {
	g := &diagnostics{d: d, procs: newProcesses(time.Now), logs: newLogs(HostName(d.id.DeviceName), time.Now), bus: &notify.Bus{}}
	var err error
	if g.crashes, err = newCrashes(string(d.state), d.prof, time.Now()); err != nil {
		return nil, err
	}
	g.ostrace = &ostrace.Server{Device: ostraceDevice{g}}
	g.logs.SetRate(d.cfg.LogRate)
	g.procs.Observe(g.processEvent)
	return g, nil
}

func (g *diagnostics) close() { g.crashes.close() }

// onBoot starts a boot's processes and chatter and logs the boot.
func (g *diagnostics) onBoot(b *boot) {
	g.procs.reset()
	g.ddi.Store(false) // a boot starts unmounted
	g.log("launchd", LogDefault, fmt.Sprintf("system boot: %s, boot session %s", osVersion(g.d.prof), b.session))
	g.log("SpringBoard", LogDefault, "SpringBoard finished startup")
	g.bus.Post("com.apple.springboard.finishedstartup")
	b.wg.Go(func() { g.logs.runChatter(b.ctx, g.procs) })
}

// ddiMounted logs a mount or unmount of the developer disk image (the
// mounter reports every change of its state; only these two are events)
// and posts the notifications hosts watch for (notify.md §4).
func (g *diagnostics) ddiMounted(mounted bool) {
	if g.ddi.Swap(mounted) == mounted {
		return
	}
	if mounted {
		g.log("mobile_storage_proxy", LogDefault, "Developer disk image mounted at /System/Developer")
		g.bus.Post("com.apple.mobile.developer_image_mounted")
		g.bus.Post("com.apple.mobile.disk_image_mounted")
		return
	}
	g.log("mobile_storage_proxy", LogDefault, "Developer disk image unmounted from /System/Developer")
}

// goingDown tells notification observers the device is going away
// (ProxyDeath, notify.md §4) while their connections still work.
func (g *diagnostics) goingDown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g.bus.Shutdown(ctx)
}

// log writes one line from the daemon named name.
func (g *diagnostics) log(name string, level LogLevel, msg string) {
	line := LogLine{Path: "/usr/libexec/" + name, Level: level, Message: msg}
	if ps := g.procs.Find(name); len(ps) > 0 {
		line.PID, line.Path = ps[0].PID, ps[0].Path
	}
	g.logs.Write(line)
}

// processEvent logs launches and exits, and saves a crash report for a
// crashing signal (report first, then the log line that announces it, so
// a host told of it finds the file whole).
func (g *diagnostics) processEvent(ev ProcessEvent) {
	p := ev.Process
	what := p.Name
	if p.BundleID != "" {
		what = fmt.Sprintf("<%s>", p.BundleID)
	}
	switch ev.Kind {
	case ProcessLaunched:
		g.log("SpringBoard", LogDefault, fmt.Sprintf("launched %s as pid %d", what, p.PID))
		g.logs.Write(LogLine{PID: p.PID, Path: p.Path, Level: LogDefault, Message: p.Name + " did finish launching"})
	case ProcessStoppedEvent:
		g.log("SpringBoard", LogDefault, fmt.Sprintf("%s [%d] stopped", what, p.PID))
	case ProcessContinued:
		g.log("SpringBoard", LogDefault, fmt.Sprintf("%s [%d] continued", what, p.PID))
	case ProcessExitedEvent:
		if p.Signal.Crashes() {
			g.saveCrash(p)
		}
		how := "exited"
		if p.Signal != 0 {
			how = "terminated by " + p.Signal.String()
		}
		g.log("SpringBoard", LogDefault, fmt.Sprintf("%s [%d] %s", what, p.PID, how))
	}
}

// saveCrash writes p's report and announces it as a device does (crash.md
// §4): ReportCrash's line, then osanalyticshelper's "Saved type" line
// logged by OSAnalytics.
func (g *diagnostics) saveCrash(p Process) {
	at := time.Now()
	name, err := g.crashes.save(crashReportName(p, at), crashReport(p, g.d.prof, at), at)
	if err != nil {
		g.d.log.Warn("sim: saving a crash report", "udid", g.d.id.UDID, "process", p.Name, "err", err)
		return
	}
	g.log("ReportCrash", LogError, fmt.Sprintf("Formulating fatal 309 report for %s[%d]: %s", p.Name, p.PID, p.Signal))
	line := LogLine{Path: "/usr/libexec/osanalyticshelper", Image: osAnalyticsImage, Level: LogDefault,
		Message: "Saved type 309(crash) report to " + path.Join(CrashFolderPath, name)}
	if ps := g.procs.Find("osanalyticshelper"); len(ps) > 0 {
		line.PID = ps[0].PID
	}
	g.logs.Write(line)
}

const osAnalyticsImage = "/System/Library/PrivateFrameworks/OSAnalytics.framework/OSAnalytics"

// onPaired counts a RemotePairing pair-setup and logs it.
func (d *Device) onPaired(h pairing.PairedHost) {
	d.stats.pairSetups.Add(1)
	d.diag.log("remoted", LogDefault, "paired with host "+h.Identifier)
}

// serveSyslog is syslog_relay's device role for one connection.
func (g *diagnostics) serveSyslog(ctx context.Context, conn net.Conn) {
	s := g.logs.subscribe()
	defer g.logs.unsubscribe(s)
	host := g.logs.HostName()
	syslog.Serve(ctx, conn, &feed[syslog.Entry]{s: s, conv: func(l *LogLine) syslog.Entry { return l.Syslog(host) }})
}

// serveOSTrace is os_trace_relay's device role for one connection.
func (g *diagnostics) serveOSTrace(ctx context.Context, conn net.Conn) {
	g.ostrace.Serve(ctx, conn)
}

// serveNotify is notification_proxy's (both variants) for one connection.
func (g *diagnostics) serveNotify(ctx context.Context, conn net.Conn) {
	g.bus.Serve(ctx, conn)
}

// serveMover is crashreportmover's.
func (g *diagnostics) serveMover(ctx context.Context, conn net.Conn) {
	crash.ServeMover(ctx, conn, func() {
		g.crashes.move(time.Now())
		g.crashes.ensureAppstored()
	})
}

// serveCopyMobile is crashreportcopymobile's: AFC over the crash folder.
// The device brings com.apple.appstored back right after it is deleted
// (crash.md §2); here, when a connection starts and ends.
func (g *diagnostics) serveCopyMobile(ctx context.Context, conn net.Conn) {
	g.crashes.ensureAppstored()
	defer g.crashes.ensureAppstored()
	g.crashes.afc.Serve(ctx, conn)
}

// ostraceDevice is the state os_trace_relay serves.
type ostraceDevice struct{ g *diagnostics }

func (o ostraceDevice) Processes() []ostrace.Process {
	ps := o.g.procs.List()
	out := make([]ostrace.Process, len(ps))
	for i, p := range ps {
		out[i] = ostrace.Process{PID: p.PID, Name: p.Name}
	}
	return out
}

func (o ostraceDevice) Activity(ctx context.Context, req ostrace.ActivityRequest) (ostrace.Feed, error) {
	s := o.g.logs.subscribe()
	context.AfterFunc(ctx, func() { o.g.logs.unsubscribe(s) })
	return &feed[ostrace.Record]{s: s, conv: (*LogLine).Record}, nil
}

// Archive writes a small PAX tar (ostrace.md §4, SIM): an Info.plist as
// macOS's log archives have, and the recent log as text.
func (o ostraceDevice) Archive(ctx context.Context, w io.Writer, req ostrace.ArchiveRequest) error {
	lines := o.g.logs.Kept()
	var text bytes.Buffer
	for i := range lines {
		if !req.StartTime.IsZero() && lines[i].Time.Before(req.StartTime) {
			continue
		}
		e := lines[i].Syslog(o.g.logs.HostName())
		text.WriteString(e.String())
		text.WriteByte('\n')
	}
	info, err := plist.Marshal(map[string]any{"OSArchiveVersion": 4, "ArchiveIdentifier": newIncidentID(),
		"EndTimeRef": map[string]any{"WallTime": time.Now().Unix()}}, plist.XMLFormat)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	now := time.Now()
	for _, f := range []struct {
		name string
		data []byte
	}{{"Info.plist", info}, {"logdata.LiveData.txt", text.Bytes()}} {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: now, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Processes is the device's process table.
func (d *Device) Processes() *Processes { return d.diag.procs }

// Logs is the device's log.
func (d *Device) Logs() *Logs { return d.diag.logs }

// Notifications is the device's notification centre: tests post on it as
// the device would and count observers.
func (d *Device) Notifications() *notify.Bus { return d.diag.bus }

// CrashFolder is the directory holding the device's crash folder.
func (d *Device) CrashFolder() string { return d.diag.crashes.dir }

// StageCrashReport keeps a report that crashreportmover moves into the
// crash folder on its next connection.
func (d *Device) StageCrashReport(name string, data []byte) { d.diag.crashes.stage(name, data) }

// FloodLogs writes n lines of chatter as fast as the connections streaming
// the log read them, dropping none (Logs.Flood): a benchmark's stream.
func (d *Device) FloodLogs(ctx context.Context, n int) error {
	return d.diag.logs.Flood(ctx, d.diag.procs, n)
}

// LogStatus is the control endpoint's view of a device's log.
type LogStatus struct {
	LogStats
	Rate float64 `json:"rate"`
	// Lines counts the lines each process asked for has written.
	Lines map[string]uint64 `json:"lines,omitempty"`
}

func logStatus(d *Device, processes []string) LogStatus {
	l := d.Logs()
	st := LogStatus{LogStats: l.Stats(), Rate: l.Rate()}
	for _, p := range processes {
		if st.Lines == nil {
			st.Lines = map[string]uint64{}
		}
		st.Lines[p] = l.Count(p)
	}
	return st
}

// parseDiagnosticsControl reads the control endpoint's requests for the
// log, the process table and the notification centre (control.go).
func parseDiagnosticsControl(name string, get func(string) string) (func(*Device) error, bool, error) {
	switch name {
	case "lograte":
		rate, err := strconv.ParseFloat(get("rate"), 64)
		if err != nil || rate < 0 {
			return nil, true, fmt.Errorf("lograte: bad rate %q", get("rate"))
		}
		return func(d *Device) error { d.Logs().SetRate(rate); return nil }, true, nil
	case "launch":
		l := Launch{Path: get("path"), BundleID: get("bundle"), Stopped: get("stopped") == "true"}
		if l.Path == "" {
			return nil, true, errors.New("launch: no path")
		}
		return func(d *Device) error { _, err := d.Processes().Launch(l); return err }, true, nil
	case "signal":
		pid, err := strconv.Atoi(get("pid"))
		if err != nil {
			return nil, true, fmt.Errorf("signal: bad pid %q", get("pid"))
		}
		sig, err := ParseSignal(get("signal"))
		if err != nil {
			return nil, true, err
		}
		return func(d *Device) error { return d.Processes().Signal(pid, sig) }, true, nil
	case "post":
		n := get("name")
		if n == "" {
			return nil, true, errors.New("post: no name")
		}
		return func(d *Device) error { d.Notifications().Post(n); return nil }, true, nil
	}
	return nil, false, nil
}
