package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/crash"
	"github.com/iosmux/iosmux/services/notify"
	"github.com/iosmux/iosmux/services/ostrace"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/services/syslog"
)

// openers returns the two ways a host reaches d's services: usbmuxd
// lockdown (paired first) and a CoreDeviceProxy tunnel's trusted RSD.
func (r *rig) openers(t *testing.T, d *Device) map[string]reach.Opener {
	t.Helper()
	ctx := testCtx(t)
	if _, err := r.pairLockdown(t, d); err != nil {
		t.Fatal(err)
	}
	ld, err := reach.NewLockdown(ctx, r.client, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := r.coreDeviceProxy(t, d)
	if err != nil {
		t.Fatal(err)
	}
	ns, p := hostTunnel(t, ctx, conn)
	rs, err := reach.NewRSD(ctx, ns.DialContext, netip.AddrPortFrom(p.ServerAddress, p.ServerRSDPort), reach.RSDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]reach.Opener{"lockdown": ld, "RSD": rs}
}

// TestDiagnosticsServices: syslog_relay, os_trace_relay,
// notification_proxy and crashreportmover answer through both names, and
// what the host reads equals what the device wrote.
func TestDiagnosticsServices(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("17.4")})
	for path, o := range r.openers(t, d) {
		t.Run(path, func(t *testing.T) {
			ctx := testCtx(t)
			// syslog_relay: every line written after the host connected.
			conn, err := o.Open(ctx, reach.SyslogRelay)
			if err != nil {
				t.Fatal(err)
			}
			sc := syslog.NewClient(conn, 0)
			defer sc.Close()
			if err := d.Logs().WaitSubscribers(ctx, 1); err != nil {
				t.Fatal(err)
			}
			rec := d.Logs().Record()
			p, _ := d.Processes().Launch(Launch{Path: "/x/Demo.app/Demo", BundleID: "com.example.demo"})
			d.Logs().Log(p.PID, p.Path, LogError, "café \\ \x1b[31m line\nbreak")
			d.Logs().SetRate(3000)
			time.Sleep(100 * time.Millisecond)
			d.Logs().SetRate(0)
			time.Sleep(20 * time.Millisecond)
			want := rec.Stop()
			if len(want) < 100 {
				t.Fatalf("only %d lines written", len(want))
			}
			for i, w := range want {
				e, err := sc.Next(ctx)
				if err != nil {
					t.Fatalf("line %d: %v", i, err)
				}
				we := w.Syslog(d.Logs().HostName())
				e.Raw = ""
				// The line carries seconds only.
				we.Time = time.Date(0, we.Time.Month(), we.Time.Day(), we.Time.Hour(), we.Time.Minute(), we.Time.Second(), 0, time.UTC)
				if *e != we {
					t.Fatalf("line %d = %+v, want %+v", i, *e, we)
				}
			}
			sc.Close()
			if err := d.Logs().WaitSubscribers(ctx, 0); err == nil && d.Logs().Stats().Dropped != 0 {
				t.Errorf("lines dropped: %+v", d.Logs().Stats())
			}

			// os_trace_relay: the process list, then records.
			ps, err := ostrace.ListProcesses(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(ps, ostrace.Process{PID: p.PID, Name: "Demo"}) || !slices.Contains(ps, ostrace.Process{PID: 1, Name: "launchd"}) {
				t.Errorf("PidList = %v", ps)
			}
			oc, err := ostrace.Open(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer oc.Close()
			if err := oc.StartActivity(ctx, ostrace.ActivityRequest{PID: p.PID, MessageFilter: ostrace.FilterAll, StreamFlags: ostrace.DefaultStreamFlag}); err != nil {
				t.Fatal(err)
			}
			d.Logs().Log(1, "/sbin/launchd", LogDefault, "not for this pid")
			d.Logs().Log(p.PID, p.Path, LogFault, "from Demo")
			rc, err := oc.Next(ctx)
			if err != nil || rc.PID != uint32(p.PID) || rc.Message != "from Demo" || rc.Level != ostrace.LevelFault || rc.Process() != "Demo" {
				t.Fatalf("record %+v, %v", rc, err)
			}

			// notification_proxy: observe, then the device posts.
			nconn, err := o.Open(ctx, reach.NotificationProxy)
			if err != nil {
				t.Fatal(err)
			}
			nc := notify.NewClient(nconn)
			name := "com.iosmux.test." + path
			if err := nc.Observe(ctx, name); err != nil {
				t.Fatal(err)
			}
			for d.Notifications().Observers(name) == 0 {
				time.Sleep(time.Millisecond)
			}
			d.Notifications().Post(name)
			if got, err := nc.Next(ctx); err != nil || got != name {
				t.Errorf("relay %q, %v", got, err)
			}
			if err := nc.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}

			// crashreportmover: a staged report is moved in before the ping.
			d.StageCrashReport("Staged-"+path+".ips", []byte(`{"bug_type":"309","name":"Staged"}`+"\n{}"))
			if err := crash.FlushReports(ctx, o); err != nil {
				t.Fatal(err)
			}
			if _, err := readCrash(d, "Staged-"+path+".ips"); err != nil {
				t.Errorf("staged report after flush: %v", err)
			}
		})
	}
}

func readCrash(d *Device, name string) ([]byte, error) {
	for _, e := range mustReadDir(d.CrashFolder()) {
		if e == name {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("%s not in %v", name, mustReadDir(d.CrashFolder()))
}

// TestNotifyProxyDeathOnReboot: every open notification connection gets
// ProxyDeath when the device reboots.
func TestNotifyProxyDeathOnReboot(t *testing.T) {
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("17.4")})
	o := r.openers(t, d)["lockdown"]
	ctx := testCtx(t)
	conn, err := o.Open(ctx, reach.NotificationProxy)
	if err != nil {
		t.Fatal(err)
	}
	nc := notify.NewClient(conn)
	defer nc.Close()
	nc.Observe(ctx, "x")
	for d.Notifications().Observers("x") == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := d.Reboot(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Next(ctx); !errors.Is(err, notify.ErrProxyDeath) {
		t.Errorf("Next across a reboot = %v, want ErrProxyDeath", err)
	}
}

func mustReadDir(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestInsecureNotifyUntrusted: the insecure notification proxy answers on
// the untrusted RSD, before any pairing.
func TestInsecureNotifyUntrusted(t *testing.T) {
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("17.4")})
	ctx := testCtx(t)
	ap, err := netip.ParseAddrPort(d.Endpoints().UntrustedRSD)
	if err != nil {
		t.Fatal(err)
	}
	o, err := reach.NewRSD(ctx, nil, ap, reach.RSDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := o.Open(ctx, reach.InsecureNotificationProxy)
	if err != nil {
		t.Fatal(err)
	}
	c := notify.NewClient(conn)
	defer c.Close()
	if err := c.Observe(ctx, "com.example.open"); err != nil {
		t.Fatal(err)
	}
	for d.Notifications().Observers("com.example.open") == 0 {
		time.Sleep(time.Millisecond)
	}
	d.Notifications().Post("com.example.open")
	if n, err := c.Next(ctx); err != nil || n != "com.example.open" {
		t.Errorf("relay %q, %v", n, err)
	}
	if _, err := o.Open(ctx, reach.SyslogRelay); !errors.Is(err, reach.ErrNotListed) {
		t.Errorf("syslog_relay on the untrusted RSD: %v, want not listed", err)
	}
}

// TestCrashServices: crashreportcopymobile lists and pulls the crash
// folder through both names; a crashing app's report is announced on
// os_trace and read at once by a watcher; clear leaves only the folder
// the device recreates.
func TestCrashServices(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("17.4")})
	openers := r.openers(t, d)
	for i, path := range []string{"RSD", "lockdown"} {
		o := openers[path]
		last := i == 1
		t.Run(path, func(t *testing.T) {
			ctx := testCtx(t)
			c, err := crash.Open(ctx, o, crash.Options{Folder: func(c net.Conn) crash.Folder { return afc.NewClient(c, nil) }})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			es, err := c.List(ctx, "/", 0)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range es {
				names = append(names, e.Path)
			}
			for _, want := range []string{"SimApp-2026-01-01-120000.ips", "DiagnosticLogs/sysdiagnose", "Retired", appstored, "Crashy-"} {
				if want == "Crashy-" {
					if i == 0 {
						continue
					}
					// The report the first run's crash saved.
					if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, want) }) {
						t.Errorf("List lacks the first run's report: %v", names)
					}
					continue
				}
				if !slices.Contains(names, want) {
					t.Errorf("List lacks %s: %v", want, names)
				}
			}

			// A watcher fed by os_trace's announcements.
			oc, err := ostrace.Open(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer oc.Close()
			if err := oc.StartActivity(ctx, ostrace.DefaultActivity); err != nil {
				t.Fatal(err)
			}
			saved := make(chan string, 8)
			go oc.Run(ctx, func(rec *ostrace.Record) error {
				if n, ok := crash.SavedReport(rec.Filename, rec.ImageName, rec.Message); ok {
					saved <- n
				}
				return nil
			})
			wctx, stop := context.WithCancel(ctx)
			reports := make(chan crash.Report, 4)
			watched := make(chan error, 1)
			go func() {
				watched <- c.Watch(wctx, crash.WatchOptions{Saved: saved, Interval: time.Hour}, func(r crash.Report) error { reports <- r; return nil })
			}()
			p, _ := d.Processes().Launch(Launch{Path: "/x/Crashy.app/Crashy", BundleID: "com.example.crashy"})
			time.Sleep(100 * time.Millisecond) // the watcher's first listing
			d.Processes().Signal(p.PID, SIGSEGV)
			select {
			case rep := <-reports:
				if rep.Header.Name != "Crashy" || rep.Header.BugType != "309" || !strings.HasPrefix(rep.Path, "Crashy-") {
					t.Errorf("report %+v", rep.Header)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the crash was not reported")
			}
			stop()
			<-watched

			out := t.TempDir()
			st, err := c.Pull(ctx, "/", out, crash.PullOptions{})
			if err != nil || st.Files < 3 {
				t.Fatalf("Pull = %+v, %v", st, err)
			}
			if !last {
				return
			}
			if err := c.Clear(ctx); err != nil {
				t.Fatal(err)
			}
			c.Close()
			// The device brings com.apple.appstored back.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				left := mustReadDir(d.CrashFolder())
				if slices.Equal(left, []string{appstored}) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after clear: %v", left)
				}
			}
		})
	}
}
