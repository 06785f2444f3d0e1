package logs_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/sim"
)

// limdTries bounds how often a libimobiledevice tool is run again when its
// request never reached the device (it exits 0 either way). This caught
// the device's TLS session tickets, after which about one post in ten was
// lost (lockdown's TestNoSessionTickets); none is expected now. Each retry
// is logged; a tool that never gets through fails the test.
const limdTries = 3

// TestNotify: notifications cross between iosmux and libimobiledevice's
// idevicenotificationproxy through the simulated device's
// notification_proxy (usbmuxd, lockdown, service TLS) both ways, and the
// device's own posts reach iosmux notify observe.
func TestNotify(t *testing.T) {
	bin := buildIOSMux(t)
	r := newRig(t, sim.FleetConfig{})
	ctx := testCtx(t)
	bus := r.d.Notifications()
	env := []string{"USBMUXD_SOCKET_ADDRESS=UNIX:" + r.f.UsbmuxSocket()}
	target := []string{"--usbmux-address", r.f.UsbmuxSocket(), "--udid", r.d.UDID()}
	observed := func(name string, wait time.Duration) bool {
		for deadline := time.Now().Add(wait); bus.Observers(name) == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				return false
			}
		}
		return true
	}

	// idevicenotificationproxy observes (stdbuf: it prints with stdio,
	// fully buffered into a pipe), iosmux posts.
	var obs *command
	for try := 1; ; try++ {
		obs = start(t, env, "stdbuf", "-oL", "idevicenotificationproxy", "-u", r.d.UDID(), "observe", "com.iosmux.test.one")
		if observed("com.iosmux.test.one", 10*time.Second) {
			break
		}
		obs.stop()
		if try == limdTries {
			out, errs := obs.output()
			t.Fatalf("idevicenotificationproxy observe never registered:\n%s%s", out, errs)
		}
		t.Logf("idevicenotificationproxy observe did not get through (try %d); again", try)
	}
	post := start(t, nil, bin, append([]string{"notify", "post", "com.iosmux.test.one"}, target...)...)
	<-post.done
	if code := post.cmd.ProcessState.ExitCode(); code != 0 {
		out, errs := post.output()
		t.Fatalf("iosmux notify post: exit %d\n%s%s", code, out, errs)
	}
	if bus.Posts("com.iosmux.test.one") != 1 {
		t.Errorf("the device saw %d posts from iosmux notify post, want 1", bus.Posts("com.iosmux.test.one"))
	}
	if out, ok := obs.waitOutput(ctx, func(s string) bool { return strings.Contains(s, "com.iosmux.test.one") }); !ok {
		_, errs := obs.output()
		t.Errorf("idevicenotificationproxy printed %q %s", out, errs)
	}
	obs.stop()

	// iosmux observes; idevicenotificationproxy posts, then the device.
	ob := start(t, nil, bin, append([]string{"notify", "observe", "--count", "2", "--json", "com.iosmux.test.two", "com.apple.springboard.lockstate"}, target...)...)
	if !observed("com.apple.springboard.lockstate", 30*time.Second) || !observed("com.iosmux.test.two", time.Second) {
		out, errs := ob.output()
		t.Fatalf("iosmux notify observe never registered:\n%s%s", out, errs)
	}
	for try := 1; ; try++ {
		p := start(t, env, "idevicenotificationproxy", "-u", r.d.UDID(), "post", "com.iosmux.test.two")
		<-p.done
		// It may close before the device has read its post: give the
		// device a moment before calling it lost.
		for deadline := time.Now().Add(3 * time.Second); bus.Posts("com.iosmux.test.two") == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if bus.Posts("com.iosmux.test.two") > 0 {
			break
		}
		if try == limdTries {
			t.Fatalf("idevicenotificationproxy post never reached the device in %d tries", limdTries)
		}
		t.Logf("idevicenotificationproxy post did not get through (try %d); again", try)
	}
	if out, ok := ob.waitOutput(ctx, func(s string) bool { return strings.Count(s, "\n") >= 1 }); !ok {
		_, errs := ob.output()
		t.Fatalf("iosmux notify observe printed %q %s", out, errs)
	}
	bus.Post("com.apple.springboard.lockstate")
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
