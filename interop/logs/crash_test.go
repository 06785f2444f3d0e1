package logs_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ios "github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/crashreport"

	"github.com/iosmux/iosmux/sim"
)

// tree is a folder's regular files: path (slash-separated) → contents.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(dir, p)
			out[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	})
	return out
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// crashed launches an app on d and kills it with SIGSEGV: the device saves
// a report. It returns the report's name.
func crashed(t testing.TB, d *sim.Device, name string) string {
	t.Helper()
	before := tree(t, d.CrashFolder())
	p, err := d.Processes().Launch(sim.Launch{Path: "/private/var/containers/Bundle/Application/X/" + name + ".app/" + name, BundleID: "com.example." + strings.ToLower(name)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Processes().Signal(p.PID, sim.SIGSEGV); err != nil {
		t.Fatal(err)
	}
	for n := range tree(t, d.CrashFolder()) {
		if _, ok := before[n]; !ok && strings.HasPrefix(n, name+"-") {
			return n
		}
	}
	t.Fatalf("no report of %s saved", name)
	return ""
}

// TestIdevicecrashreport: libimobiledevice's idevicecrashreport, through
// usbmuxd (crashreportmover's ping, then AFC on crashreportcopymobile),
// copies every report with -k and leaves the folder as it was; without -k
// it moves them (copies, then removes), and the device keeps only the
// folder it recreates.
func TestIdevicecrashreport(t *testing.T) {
	r := newRig(t, sim.FleetConfig{})
	crashed(t, r.d, "Demo")
	want := tree(t, r.d.CrashFolder())
	if len(want) < 3 {
		t.Fatalf("the crash folder holds %v", keys(want))
	}
	env := []string{"USBMUXD_SOCKET_ADDRESS=UNIX:" + r.f.UsbmuxSocket()}
	for _, keep := range []bool{true, false} {
		out := t.TempDir()
		args := []string{"-u", r.d.UDID()}
		if keep {
			args = append(args, "-k")
		}
		c := start(t, env, "idevicecrashreport", append(args, out)...)
		<-c.done
		stdout, stderr := c.output()
		if c.cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("idevicecrashreport %v: exit %d\n%s%s", args, c.cmd.ProcessState.ExitCode(), stdout, stderr)
		}
		got := tree(t, out)
		if !slices.Equal(keys(got), keys(want)) {
			t.Errorf("idevicecrashreport %v copied %v, the device had %v", args, keys(got), keys(want))
		}
		for p, w := range want {
			if got[p] != w {
				t.Errorf("idevicecrashreport %v: %s differs", args, p)
			}
		}
		left := tree(t, r.d.CrashFolder())
		if keep && !slices.Equal(keys(left), keys(want)) {
			t.Errorf("with -k the device's folder changed: %v", keys(left))
		}
		if !keep && len(left) != 0 {
			t.Errorf("after moving, the device still holds %v", keys(left))
		}
	}
}

// TestGoIOSCrash: go-ios v1.3.2's `ios crash ls` and `ios crash cp`
// (crashreport.ListReports and DownloadReports: the mover's ping read in
// one read, then AFC's walk) list every report of the device and copy
// those matching a pattern, flat, byte for byte.
func TestGoIOSCrash(t *testing.T) {
	r := newRig(t, sim.FleetConfig{})
	demo := crashed(t, r.d, "Demo")
	want := tree(t, r.d.CrashFolder())
	t.Setenv("USBMUXD_SOCKET_ADDRESS", "unix://"+r.f.UsbmuxSocket())
	entry, err := ios.GetDevice(r.d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	list, err := crashreport.ListReports(entry, "*")
	if err != nil {
		t.Fatalf("ios crash ls: %v", err)
	}
	var got []string
	for _, p := range list {
		got = append(got, strings.TrimPrefix(path.Clean(p), "/"))
	}
	slices.Sort(got)
	if !slices.Equal(got, keys(want)) {
		t.Errorf("ios crash ls = %v, the device has %v", got, keys(want))
	}
	out := t.TempDir()
	if err := crashreport.DownloadReports(entry, "Demo-*.ips", out); err != nil {
		t.Fatalf("ios crash cp: %v", err)
	}
	copied := tree(t, out)
	if !slices.Equal(keys(copied), []string{demo}) || copied[demo] != want[demo] {
		t.Errorf("ios crash cp Demo-*.ips copied %v", keys(copied))
	}
}

// TestCrashCommands: iosmux crash ls, pull (the device's structure and
// file times kept), watch (a crash appears within a second) and clear,
// through usbmuxd and through a tunnel's RSD (--rsd).
func TestCrashCommands(t *testing.T) {
	bin := buildIOSMux(t)
	r := newRig(t, sim.FleetConfig{})
	rsdAddr := r.tunnelBackend(t)
	targets := map[string][]string{
		"usbmuxd": {"--usbmux-address", r.f.UsbmuxSocket(), "--udid", r.d.UDID()},
		"RSD":     {"--rsd", rsdAddr.String(), "--state-dir", t.TempDir()},
	}
	run := func(t *testing.T, target string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append(args, targets[target]...)...)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("iosmux %v: %v\n%s%s", args, err, out, stderr)
		}
		return string(out)
	}
	for _, target := range []string{"usbmuxd", "RSD"} {
		t.Run(target, func(t *testing.T) {
			// watch: a crash shows up within a second.
			ctx := testCtx(t)
			w := start(t, nil, bin, append([]string{"crash", "watch", "--json"}, targets[target]...)...)
			// Ready once its log stream is on (after its first listing).
			if err := r.d.Logs().WaitSubscribers(ctx, 1); err != nil {
				out, errs := w.output()
				t.Fatalf("crash watch never started: %v\n%s%s", err, out, errs)
			}
			killed := time.Now()
			name := crashed(t, r.d, "Watched"+target)
			out, ok := w.waitOutput(ctx, func(s string) bool { return strings.Contains(s, "\n") })
			delay := time.Since(killed)
			if !ok {
				_, errs := w.output()
				t.Fatalf("crash watch printed nothing: %q %s", out, errs)
			}
			var rep struct{ Path, Process, BugType string }
			if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &rep); err != nil {
				t.Fatalf("crash watch printed %q: %v", out, err)
			}
			if rep.Path != name || rep.Process != "Watched"+target || rep.BugType != "309" {
				t.Errorf("crash watch reported %+v, the device saved %s", rep, name)
			}
			t.Logf("the crash appeared in crash watch %v after the kill", delay.Round(time.Millisecond))
			if delay > time.Second {
				t.Errorf("the crash took %v to appear in crash watch, want under 1 s", delay)
			}
			w.stop()
			r.d.Logs().WaitSubscribers(ctx, 0)

			// ls and pull.
			want := tree(t, r.d.CrashFolder())
			var entries []struct {
				Path, Type string
				Size       int64
				Mtime      time.Time
			}
			if err := json.Unmarshal([]byte(run(t, target, "crash", "ls", "--json")), &entries); err != nil {
				t.Fatal(err)
			}
			var files []string
			for _, e := range entries {
				if e.Type == "file" {
					files = append(files, e.Path)
				}
			}
			slices.Sort(files)
			if !slices.Equal(files, keys(want)) {
				t.Errorf("crash ls = %v, the device has %v", files, keys(want))
			}
			out2 := t.TempDir()
			run(t, target, "crash", "pull", out2)
			got := tree(t, out2)
			if !slices.Equal(keys(got), keys(want)) {
				t.Errorf("crash pull copied %v, the device has %v", keys(got), keys(want))
			}
			for p, w := range want {
				if got[p] != w {
					t.Errorf("crash pull: %s differs", p)
				}
				di, _ := os.Stat(filepath.Join(r.d.CrashFolder(), filepath.FromSlash(p)))
				li, _ := os.Stat(filepath.Join(out2, filepath.FromSlash(p)))
				if di == nil || li == nil || !li.ModTime().Equal(di.ModTime().Truncate(time.Second)) && !li.ModTime().Equal(di.ModTime()) {
					t.Errorf("crash pull: %s has time %v, the device's is %v", p, li.ModTime(), di.ModTime())
				}
			}
		})
	}
	// clear, once: the device keeps only the folder it recreates.
	run(t, "usbmuxd", "crash", "clear")
	if left := tree(t, r.d.CrashFolder()); len(left) != 0 {
		t.Errorf("after crash clear the device holds %v", keys(left))
	}
}
