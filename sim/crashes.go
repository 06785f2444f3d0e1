package sim

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/services/afc"
)

// The simulated device's crash folder (crash.md §6): a real directory,
// served by crashreportcopymobile's AFC server, under the state directory
// (StateDir/CrashReporter) or, without one, a temporary directory removed
// when the device closes.

// CrashFolderPath is where a real device keeps the folder; reports and the
// "Saved type" log line name files by it.
const CrashFolderPath = "/private/var/mobile/Library/Logs/CrashReporter"

// appstored is the folder the device recreates right after it is deleted.
const appstored = "com.apple.appstored"

type crashes struct {
	dir string
	tmp bool        // dir is ours to remove
	afc *afc.Server // crashreportcopymobile's device role over dir

	mu     sync.Mutex
	staged map[string][]byte // reports the mover moves in (StageCrashReport)
}

func newCrashes(stateDir string, prof Profile, now time.Time) (_ *crashes, err error) {
	c := &crashes{staged: map[string][]byte{}}
	fresh := true
	if stateDir == "" {
		dir, err := os.MkdirTemp("", "iosmux-sim-crashes-")
		if err != nil {
			return nil, fmt.Errorf("sim: crash folder: %w", err)
		}
		c.dir, c.tmp = dir, true
	} else {
		c.dir = filepath.Join(stateDir, "CrashReporter")
		_, err := os.Stat(c.dir)
		fresh = err != nil
	}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if fresh {
		if err := c.seed(prof, now); err != nil {
			return nil, err
		}
	} else if err := c.ensureAppstored(); err != nil {
		return nil, err
	}
	if c.afc, err = afc.NewServer(afc.ServerConfig{Root: c.dir}); err != nil {
		return nil, fmt.Errorf("sim: crash folder: %w", err)
	}
	return c, nil
}

func (c *crashes) close() {
	if c.tmp {
		os.RemoveAll(c.dir)
	}
}

// seed fills a new folder: the usual subfolders, a crash report of a
// simulated app and a report of a kind hosts do not know.
func (c *crashes) seed(prof Profile, now time.Time) error {
	for _, d := range []string{"DiagnosticLogs/sysdiagnose", "Retired", appstored} {
		if err := os.MkdirAll(filepath.Join(c.dir, filepath.FromSlash(d)), 0o755); err != nil {
			return fmt.Errorf("sim: crash folder: %w", err)
		}
	}
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	app := Process{PID: 412, Name: "SimApp", Path: "/private/var/containers/Bundle/Application/0C0FFEE0-0000-4000-8000-000000000001/SimApp.app/SimApp",
		BundleID: "com.iosmux.simapp", Signal: SIGSEGV}
	if _, err := c.save("SimApp-2026-01-01-120000.ips", crashReport(app, prof, at), at); err != nil {
		return err
	}
	other := fmt.Sprintf(`{"bug_type":"999","name":"thermalmonitord","timestamp":"%s","os_version":"%s","incident_id":"%s"}`+"\n"+`{"note":"a report kind hosts do not know"}`+"\n",
		at.Format(ipsTime), osVersion(prof), newIncidentID())
	_, err := c.save("thermalmonitord-2026-01-01-120500.ips", []byte(other), at.Add(5*time.Minute))
	return err
}

// ensureAppstored recreates the folder a device brings back at once.
func (c *crashes) ensureAppstored() error {
	return os.MkdirAll(filepath.Join(c.dir, appstored), 0o755)
}

// save writes a report into the folder under name, or under name with
// "-1", "-2"… before its extension when that is taken, with its
// modification time set to at. It returns the name used.
func (c *crashes) save(name string, data []byte, at time.Time) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ext := path.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := 0; ; i++ {
		n := name
		if i > 0 {
			n = fmt.Sprintf("%s-%d%s", base, i, ext)
		}
		p := filepath.Join(c.dir, n)
		if _, err := os.Lstat(p); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("sim: crash report %s: %w", n, err)
		}
		if err := atomicfile.Write(p, data, 0o644); err != nil {
			return "", fmt.Errorf("sim: crash report %s: %w", n, err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			return "", fmt.Errorf("sim: crash report %s: %w", n, err)
		}
		return n, nil
	}
}

// stage keeps a report for the mover to move in.
func (c *crashes) stage(name string, data []byte) {
	c.mu.Lock()
	c.staged[name] = data
	c.mu.Unlock()
}

// move puts the staged reports into the folder (crashreportmover).
func (c *crashes) move(now time.Time) {
	c.mu.Lock()
	staged := c.staged
	c.staged = map[string][]byte{}
	c.mu.Unlock()
	for name, data := range staged {
		c.save(name, data, now)
	}
}

// ipsTime is the header's timestamp layout.
const ipsTime = "2006-01-02 15:04:05.00 -0700"

func osVersion(prof Profile) string {
	return fmt.Sprintf("iPhone OS %s (%s)", prof.OSVersion, prof.BuildVersion)
}

func newIncidentID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:]))
}

// exceptionType is the Mach exception a signal comes from.
func exceptionType(sig Signal) string {
	switch sig {
	case SIGSEGV, SIGBUS:
		return "EXC_BAD_ACCESS"
	case SIGILL:
		return "EXC_BAD_INSTRUCTION"
	case SIGFPE:
		return "EXC_ARITHMETIC"
	case SIGTRAP:
		return "EXC_BREAKPOINT"
	}
	return "EXC_CRASH"
}

// crashReport builds a bug type 309 report for p, killed by p.Signal at
// at: the header line, then a body with the keys pycrashreport prints
// (crash.md §3; the values are the simulator's).
func crashReport(p Process, prof Profile, at time.Time) []byte {
	hdr := map[string]any{
		"app_name": p.Name, "timestamp": at.Format(ipsTime), "app_version": "1.0", "slice_uuid": newIncidentID(),
		"bug_type": "309", "os_version": osVersion(prof), "bundleID": p.BundleID, "incident_id": newIncidentID(),
		"name": p.Name,
	}
	if p.BundleID == "" {
		delete(hdr, "bundleID")
		delete(hdr, "app_version")
	}
	const base = 0x100a4c000
	body := map[string]any{
		"pid": p.PID, "procName": p.Name, "procPath": p.Path, "bundleInfo": map[string]any{"CFBundleIdentifier": p.BundleID},
		"captureTime": at.Format(ipsTime), "modelCode": "iPhone15,2", "osVersion": map[string]any{"train": "iPhone OS " + prof.OSVersion, "build": prof.BuildVersion},
		"exception":      map[string]any{"type": exceptionType(p.Signal), "signal": p.Signal.String(), "subtype": "KERN_INVALID_ADDRESS at 0x0000000000000000"},
		"faultingThread": 0,
		"threads": []any{map[string]any{
			"triggered": true, "id": 0x1000 + p.PID, "queue": "com.apple.main-thread",
			"frames": []any{
				map[string]any{"imageIndex": 0, "imageOffset": 0x4f10, "symbol": "-[ViewController crash:]", "symbolLocation": 24},
				map[string]any{"imageIndex": 1, "imageOffset": 0x1a2b4, "symbol": "start", "symbolLocation": 2208},
			},
			"threadState": map[string]any{"flavor": "ARM_THREAD_STATE64", "pc": map[string]any{"value": base + 0x4f10}, "lr": map[string]any{"value": base + 0x4e00},
				"sp": map[string]any{"value": 0x16f7d3f20}, "fp": map[string]any{"value": 0x16f7d3f40}, "x": []any{map[string]any{"value": 0}, map[string]any{"value": 1}}},
		}},
		"usedImages": []any{
			map[string]any{"path": p.Path, "base": base, "size": 0x8000, "name": p.Name, "arch": "arm64"},
			map[string]any{"path": "/usr/lib/dyld", "base": 0x1c0000000, "size": 0x60000, "name": "dyld", "arch": "arm64e"},
		},
	}
	h, _ := json.Marshal(hdr)
	b, _ := json.MarshalIndent(body, "", "  ")
	return append(append(append(h, '\n'), b...), '\n')
}

// crashReportName is the report's file name for a process crashing at at.
func crashReportName(p Process, at time.Time) string {
	return fmt.Sprintf("%s-%s.ips", p.Name, at.Format("2006-01-02-150405"))
}
