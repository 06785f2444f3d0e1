package logs_test

import (
	"bufio"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ios "github.com/danielpaulus/go-ios/ios"
	goiossyslog "github.com/danielpaulus/go-ios/ios/syslog"

	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/services/syslog"
	"github.com/iosmux/iosmux/sim"
)

// burst writes lines a test can recognise — an app's launch, a line that
// needs vis escapes, a plain one — then chatter at rate for dur, and
// returns everything the device wrote meanwhile.
func burst(t testing.TB, d *sim.Device, rate float64, dur time.Duration) []sim.LogLine {
	t.Helper()
	rec := d.Logs().Record()
	p, err := d.Processes().Launch(sim.Launch{Path: "/private/var/containers/Bundle/Application/X/Demo.app/Demo", BundleID: "com.example.demo"})
	if err != nil {
		t.Fatal(err)
	}
	d.Logs().Log(p.PID, p.Path, sim.LogError, `café ☕ \ back\slash`)
	d.Logs().Log(p.PID, p.Path, sim.LogDefault, "plain line")
	if rate > 0 {
		d.Logs().SetRate(rate)
		time.Sleep(dur)
		d.Logs().SetRate(0)
		time.Sleep(20 * time.Millisecond)
	}
	lines := rec.Stop()
	if len(lines) < 4 {
		t.Fatalf("the device wrote %d lines", len(lines))
	}
	return lines
}

// wire is a line as syslog_relay sends it, vis escapes and all, without
// its terminator.
func wire(d *sim.Device, l sim.LogLine) string {
	e := l.Syslog(d.Logs().HostName())
	return string(syslog.AppendVis(nil, e.AppendText(nil)))
}

// nonEmptyLines splits output into its lines, dropping empty ones.
func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// compareLines reports the first difference between got and want.
func compareLines(t *testing.T, who string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s printed %d lines, the device wrote %d", who, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s line %d:\n got %q\nwant %q", who, i, got[i], want[i])
			return
		}
	}
}

// TestIdevicesyslog: libimobiledevice's idevicesyslog, through usbmuxd
// (lockdown, service TLS), prints every line the device wrote while it
// was connected, as sent: it drops the device name and keeps the vis
// escapes.
func TestIdevicesyslog(t *testing.T) {
	r := newRig(t, sim.FleetConfig{})
	ctx := testCtx(t)
	c := start(t, []string{"USBMUXD_SOCKET_ADDRESS=UNIX:" + r.f.UsbmuxSocket()}, "idevicesyslog", "-u", r.d.UDID(), "--no-colors")
	if err := r.d.Logs().WaitSubscribers(ctx, 1); err != nil {
		out, errs := c.output()
		t.Fatalf("idevicesyslog never connected: %v\n%s%s", err, out, errs)
	}
	lines := burst(t, r.d, 4000, 300*time.Millisecond)
	host := " " + r.d.Logs().HostName() + " "
	var want []string
	for _, l := range lines {
		w := wire(r.d, l)
		want = append(want, w[:15]+" "+strings.TrimPrefix(w[15:], host))
	}
	out, _ := c.waitOutput(ctx, func(s string) bool { return len(nonEmptyLines(s)) > len(want) })
	// idevicesyslog prints "[connected]" from its main thread once the
	// relay is up, while its reader thread may already print the first
	// lines the device sent: where it lands among them is idevicesyslog's
	// race (seen once in a full interop run), not ours. It must be there once.
	got := nonEmptyLines(out)
	if i := slices.Index(got, "[connected]"); i < 0 {
		t.Errorf("idevicesyslog never printed [connected]")
	} else {
		got = slices.Delete(got, i, i+1)
	}
	compareLines(t, "idevicesyslog", got, want)
	if st := r.d.Logs().Stats(); st.Dropped != 0 {
		t.Errorf("the device dropped lines for a slow reader: %+v", st)
	}
}

// TestGoIOSSyslog: go-ios's syslog client (`ios syslog`: usbmuxd lockdown
// on a device without RSD, its vis decoding) and `ios syslog --parse`'s
// parser read every line the device wrote, with the fields it wrote.
func TestGoIOSSyslog(t *testing.T) {
	r := newRig(t, sim.FleetConfig{})
	ctx := testCtx(t)
	t.Setenv("USBMUXD_SOCKET_ADDRESS", "unix://"+r.f.UsbmuxSocket())
	entry, err := ios.GetDevice(r.d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := goiossyslog.New(entry)
	if err != nil {
		t.Fatalf("go-ios syslog: %v", err)
	}
	defer conn.Close()
	got := make(chan string, 1<<16)
	go func() {
		defer close(got)
		for {
			m, err := conn.ReadLogMessage()
			if err != nil {
				return
			}
			// What `ios syslog` does before printing.
			got <- strings.TrimSuffix(strings.TrimSuffix(m, "\x00"), "\n")
		}
	}()
	if err := r.d.Logs().WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	lines := burst(t, r.d, 4000, 300*time.Millisecond)
	parse := goiossyslog.Parser()
	year := time.Now().Year()
	for i, l := range lines {
		var m string
		select {
		case m = <-got:
		case <-ctx.Done():
			t.Fatalf("go-ios read %d of %d lines", i, len(lines))
		}
		e := l.Syslog(r.d.Logs().HostName())
		if want := e.String(); m != want {
			t.Fatalf("line %d: go-ios read\n %q\nwant\n %q", i, m, want)
		}
		pe, err := parse(m)
		if err != nil {
			t.Fatalf("line %d: go-ios parser: %v", i, err)
		}
		ts := time.Date(year, e.Time.Month(), e.Time.Day(), e.Time.Hour(), e.Time.Minute(), e.Time.Second(), 0, time.UTC).Format("2006-01-02T15:04:05")
		if pe.Timestamp != ts || pe.Device != e.DeviceName || pe.Process != e.Process || pe.PID != strconv.Itoa(e.PID) ||
			pe.Level != string(e.Level) || pe.Message != e.Message {
			t.Fatalf("line %d: go-ios parsed %+v from %q", i, *pe, m)
		}
	}
	select {
	case m := <-got:
		t.Errorf("go-ios read a line the device did not write: %q", m)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestAppiumSyslog: appium-ios-remotexpc's syslog service over RSD (a
// CoreDeviceProxy tunnel served on loopback by iosmux's backend): in text
// mode (syslog_relay) every line as sent; on os_trace_relay every record
// decoded to the fields the device wrote.
func TestAppiumSyslog(t *testing.T) {
	r := newRig(t, sim.FleetConfig{})
	rsdAddr := r.tunnelBackend(t)
	host, port := rsdAddr.Addr().String(), strconv.Itoa(int(rsdAddr.Port()))
	script := filepath.Join(testenv.ModuleDir(), "logs", "appium_syslog.mjs")

	t.Run("text", func(t *testing.T) {
		ctx := testCtx(t)
		c := start(t, nil, "node", script, r.d.UDID(), host, port, "text")
		waitStarted(t, c)
		lines := burst(t, r.d, 4000, 300*time.Millisecond)
		var want []string
		for _, l := range lines {
			want = append(want, wire(r.d, l))
		}
		out, _ := c.waitOutput(ctx, func(s string) bool { return len(nonEmptyLines(s)) >= len(want) })
		var got []string
		for _, l := range nonEmptyLines(out) {
			var s string
			if err := json.Unmarshal([]byte(l), &s); err != nil {
				t.Fatalf("appium printed %q: %v", l, err)
			}
			got = append(got, s)
		}
		compareLines(t, "appium (text)", got, want)
		c.stop()
		r.d.Logs().WaitSubscribers(ctx, 0)
	})

	t.Run("os_trace", func(t *testing.T) {
		ctx := testCtx(t)
		c := start(t, nil, "node", script, r.d.UDID(), host, port, "trace")
		waitStarted(t, c)
		lines := burst(t, r.d, 2000, 200*time.Millisecond)
		out, _ := c.waitOutput(ctx, func(s string) bool { return len(nonEmptyLines(s)) >= len(lines) })
		got := nonEmptyLines(out)
		if len(got) != len(lines) {
			t.Errorf("appium decoded %d records, the device wrote %d", len(got), len(lines))
		}
		sc := bufio.NewScanner(strings.NewReader(out))
		for i := 0; sc.Scan() && i < len(lines); i++ {
			var e struct {
				PID       int
				Seconds   int64
				Micros    int64
				Level     int
				Filename  string
				ImageName string
				Message   string
				Label     *struct{ Subsystem, Category string }
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			rec := lines[i].Record()
			label := ""
			if e.Label != nil {
				label = e.Label.Subsystem + "/" + e.Label.Category
			}
			wantLabel := ""
			if rec.Subsystem != "" || rec.Category != "" {
				wantLabel = rec.Subsystem + "/" + rec.Category
			}
			if e.PID != int(rec.PID) || e.Seconds != rec.Time.Unix() || e.Micros != int64(rec.Time.Nanosecond()/1000) ||
				e.Level != int(rec.Level) || e.Filename != rec.Filename || e.ImageName != rec.ImageName || e.Message != rec.Message || label != wantLabel {
				t.Fatalf("record %d: appium decoded %+v (label %q), the device wrote %+v", i, e, label, rec)
			}
		}
	})
}

// waitStarted waits for the appium script to say its capture runs: in
// text mode appium reads the stream raw only from then on (what arrives
// while it still reads the checkin replies is lost, on a real device too).
func waitStarted(t *testing.T, c *command) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
	defer cancel()
	for {
		out, errs := c.output()
		if strings.Contains(errs, "started\n") {
			return
		}
		select {
		case <-c.done:
			t.Fatalf("appium ended: %s%s", out, errs)
		case <-ctx.Done():
			t.Fatalf("appium never started: %s%s", out, errs)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
