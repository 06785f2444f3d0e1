package logs_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/sim"
)

// TestNotify: notifications cross between iosmux and libimobiledevice's
// idevicenotificationproxy through the simulated device's
// notification_proxy (usbmuxd, lockdown, service TLS) both ways, and the
// device's own posts reach iosmux notify observe.
func TestNotify(t *testing.T) {
	bin := buildIOSMux(t)
	r := newRig(t, sim.FleetConfig{})
	ctx := testCtx(t)
	env := []string{"USBMUXD_SOCKET_ADDRESS=UNIX:" + r.f.UsbmuxSocket()}
	target := []string{"--usbmux-address", r.f.UsbmuxSocket(), "--udid", r.d.UDID()}
	waitObserved := func(name string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); r.d.Notifications().Observers(name) == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("nobody observes %s", name)
			}
		}
	}

	// idevicenotificationproxy observes, iosmux posts.
	// stdbuf: it prints with stdio, fully buffered into a pipe.
	obs := start(t, env, "stdbuf", "-oL", "idevicenotificationproxy", "-u", r.d.UDID(), "observe", "com.iosmux.test.one")
	waitObserved("com.iosmux.test.one")
	post := start(t, nil, bin, append([]string{"notify", "post", "com.iosmux.test.one"}, target...)...)
	<-post.done
	if code := post.cmd.ProcessState.ExitCode(); code != 0 {
		out, errs := post.output()
		t.Fatalf("iosmux notify post: exit %d\n%s%s", code, out, errs)
	}
	if out, ok := obs.waitOutput(ctx, func(s string) bool { return strings.Contains(s, "com.iosmux.test.one") }); !ok {
		_, errs := obs.output()
		t.Errorf("idevicenotificationproxy printed %q %s", out, errs)
	}
	obs.stop()

	// iosmux observes; idevicenotificationproxy posts, then the device.
	ob := start(t, nil, bin, append([]string{"notify", "observe", "--count", "2", "--json", "com.iosmux.test.two", "com.apple.springboard.lockstate"}, target...)...)
	waitObserved("com.apple.springboard.lockstate")
	waitObserved("com.iosmux.test.two")
	p := start(t, env, "idevicenotificationproxy", "-u", r.d.UDID(), "post", "com.iosmux.test.two")
	<-p.done
	if out, ok := ob.waitOutput(ctx, func(s string) bool { return strings.Count(s, "\n") >= 1 }); !ok {
		t.Fatalf("iosmux notify observe printed %q", out)
	}
	r.d.Notifications().Post("com.apple.springboard.lockstate")
	<-ob.done
	out, errs := ob.output()
	var names []string
	for _, l := range nonEmptyLines(out) {
		var v struct{ Name string }
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("iosmux notify observe printed %q: %v", l, err)
		}
		names = append(names, v.Name)
	}
	if ob.cmd.ProcessState.ExitCode() != 0 || strings.Join(names, " ") != "com.iosmux.test.two com.apple.springboard.lockstate" {
		t.Errorf("iosmux notify observe: exit %d, names %v\n%s", ob.cmd.ProcessState.ExitCode(), names, errs)
	}
}
