package usbmux_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/usbmux"
)

// realUsbmuxd runs Debian's usbmuxd in the foreground inside a private
// mount namespace. Debian's 1.1.1 has no socket-path option and -z makes it
// exit without a device, so its /run (where /var/run points) and /var/lib
// (its lockdown directory: SystemBUID, pair records) are bind mounts of
// directories the test owns. The socket thus appears in runDir, reachable
// from the host, and the host's /var/run and /var/lib stay untouched.
type realUsbmuxd struct {
	runDir, libDir string
	cmd            *exec.Cmd
	done           chan error
	stopOnce       sync.Once
	log            testkit.Buffer
}

func startRealUsbmuxd(t *testing.T, runDir, libDir string) *realUsbmuxd {
	t.Helper()
	needTool(t, "usbmuxd")
	needTool(t, "unshare")
	u := &realUsbmuxd{runDir: runDir, libDir: libDir, done: make(chan error, 1)}
	u.cmd = exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" /run && mount --bind "$1" /var/lib && exec usbmuxd -f -v`, runDir, libDir)
	u.cmd.Stdout, u.cmd.Stderr = &u.log, &u.log
	if err := u.cmd.Start(); err != nil {
		t.Fatalf("start usbmuxd: %v", err)
	}
	go func() { u.done <- u.cmd.Wait() }()
	t.Cleanup(u.stop)
	// usbmuxd creates its socket once initialised.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(u.socket()); err == nil {
			return u
		}
		select {
		case err := <-u.done:
			u.done <- err // for stop
			t.Fatalf("usbmuxd exited before creating its socket: %v\n%s", err, u.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("usbmuxd created no socket in 30 s:\n%s", u.log.String())
		}
	}
}

func (u *realUsbmuxd) socket() string { return filepath.Join(u.runDir, "usbmuxd") }

// stop ends the daemon (SIGTERM, as systemd would) and waits for it.
func (u *realUsbmuxd) stop() {
	u.stopOnce.Do(func() {
		u.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-u.done:
		case <-time.After(10 * time.Second):
			u.cmd.Process.Kill()
			<-u.done
		}
	})
}

func TestRealUsbmuxd(t *testing.T) {
	hostRun, hostRunErr := os.Lstat("/var/run/usbmuxd")
	runDir, libDir := t.TempDir(), t.TempDir()
	u := startRealUsbmuxd(t, runDir, libDir)
	addr, err := usbmux.ParseAddr("UNIX:" + u.socket())
	if err != nil {
		t.Fatal(err)
	}
	c := usbmux.NewClient(usbmux.ClientConfig{Addr: addr})
	ctx := testCtx(t)

	t.Run("ListDevices", func(t *testing.T) {
		devs, err := c.ListDevices(ctx)
		if err != nil || len(devs) != 0 {
			t.Errorf("ListDevices = %v, %v; want an empty list", devs, err)
		}
	})

	t.Run("ReadBUID", func(t *testing.T) {
		buid, err := c.ReadBUID(ctx)
		if err != nil || buid == "" {
			t.Fatalf("ReadBUID = %q, %v", buid, err)
		}
		again, err := c.ReadBUID(ctx)
		if err != nil || again != buid {
			t.Errorf("second ReadBUID = %q, %v; want %q", again, err, buid)
		}
		// usbmuxd keeps it in its configuration file: an independent check.
		b, err := os.ReadFile(filepath.Join(libDir, "lockdown", "SystemConfiguration.plist"))
		if err != nil {
			t.Fatal(err)
		}
		var conf struct{ SystemBUID string }
		if _, err := plist.Unmarshal(b, &conf); err != nil || conf.SystemBUID != buid {
			t.Errorf("SystemConfiguration.plist SystemBUID = %q, %v; want %q", conf.SystemBUID, err, buid)
		}
	})

	t.Run("pair records", func(t *testing.T) {
		const udid = "00008110-0011223344556677"
		if _, err := c.ReadPairRecord(ctx, udid); !errors.Is(err, usbmux.ErrNoPairRecord) {
			t.Fatalf("ReadPairRecord of an unknown UDID: %v; want ErrNoPairRecord", err)
		}
		rec := map[string]any{"HostID": "5F9E1C5A-0000-4000-8000-000000000001", "SystemBUID": "B", "HostCertificate": []byte("pem")}
		data, _ := plist.Marshal(rec, plist.XMLFormat)
		if err := c.SavePairRecord(ctx, udid, 0, data); err != nil {
			t.Fatalf("SavePairRecord: %v", err)
		}
		file := filepath.Join(libDir, "lockdown", udid+".plist")
		if _, err := os.Stat(file); err != nil {
			t.Errorf("usbmuxd stored no %s: %v", file, err)
		}
		back, err := c.ReadPairRecord(ctx, udid)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if _, err := plist.Unmarshal(back, &got); err != nil || !reflect.DeepEqual(got, rec) {
			t.Errorf("ReadPairRecord = %v, %v; want %v", got, err, rec)
		}
		if err := c.DeletePairRecord(ctx, udid); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("%s still there after DeletePairRecord: %v", file, err)
		}
		if _, err := c.ReadPairRecord(ctx, udid); !errors.Is(err, usbmux.ErrNoPairRecord) {
			t.Errorf("ReadPairRecord after delete: %v", err)
		}
	})

	t.Run("Connect to an absent device", func(t *testing.T) {
		if _, err := c.Connect(ctx, 4242, 62078); !errors.Is(err, usbmux.ErrBadDevice) {
			t.Errorf("Connect: %v; want ErrBadDevice", err)
		}
	})

	t.Run("Listen and a vanishing usbmuxd", func(t *testing.T) {
		w := c.Watch(ctx, usbmux.WatchConfig{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
		defer w.Close()
		if ev := nextEvent(t, w); ev.Kind != usbmux.Connected {
			t.Fatalf("first event %+v; want Connected", ev)
		}
		// No device: the stream must stay open and quiet.
		select {
		case ev := <-w.Events():
			t.Fatalf("spurious event with no device attached: %+v", ev)
		case <-time.After(2 * time.Second):
		}
		u.stop()
		ev := nextEvent(t, w)
		if ev.Kind != usbmux.Disconnected || ev.Err == nil {
			t.Fatalf("after usbmuxd stopped: %+v; want Disconnected with an error", ev)
		}
		t.Logf("usbmuxd gone: %v", ev.Err)
		startRealUsbmuxd(t, runDir, libDir)
		if ev := nextEvent(t, w); ev.Kind != usbmux.Connected {
			t.Fatalf("after usbmuxd restarted: %+v; want Connected", ev)
		}
		select {
		case ev := <-w.Events():
			t.Fatalf("spurious event from the restarted usbmuxd: %+v", ev)
		case <-time.After(time.Second):
		}
	})

	// The host's /var/run/usbmuxd is as it was.
	after, afterErr := os.Lstat("/var/run/usbmuxd")
	if (hostRunErr == nil) != (afterErr == nil) || hostRunErr == nil && !os.SameFile(hostRun, after) {
		t.Errorf("host /var/run/usbmuxd changed: before %v/%v, after %v/%v", hostRun, hostRunErr, after, afterErr)
	}
}

func nextEvent(t *testing.T, w *usbmux.Watcher) usbmux.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("event stream closed")
		}
		return ev
	case <-ctx.Done():
		t.Fatal("no event in 30 s")
	}
	return usbmux.Event{}
}
