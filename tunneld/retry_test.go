package tunneld_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/tunneld"
)

func withLog(buf *testkit.Buffer) func(*tunneld.Config) {
	return func(c *tunneld.Config) {
		c.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// TestTrustRefused: after Don't Trust the daemon does not raise a new
// Trust dialog every fraction of a second (the old back-off started at
// 100 ms here): it says in its log and in /start-tunnel's error that the
// user refused, a client asking does not raise the dialog again, and a
// replug asks again at once.
func TestTrustRefused(t *testing.T) {
	f := fleet(t, 1, "")
	d := f.Devices()[0]
	d.SetTrust(sim.TrustDeny)
	var logs testkit.Buffer
	r := daemon(t, f, withLog(&logs))
	waitFor(t, "the refusal in the log", func() bool { return strings.Contains(logs.String(), "the user refused to pair") })
	time.Sleep(1500 * time.Millisecond)
	if n := d.Stats().TrustPrompts; n != 1 {
		t.Fatalf("%d Trust dialogs within 1.5 s of a refusal; want 1", n)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `\n`) {
			t.Errorf("log line with a literal \\n: %s", line)
		}
	}

	code, body := get(t, r.url(tunneld.APIPMD3, "/start-tunnel?udid="+d.UDID()))
	var reply struct {
		Error struct {
			Exception string `json:"exception"`
			Traceback string `json:"traceback"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &reply); err != nil || code != 501 || reply.Error.Exception != "UserDeniedPairingError" ||
		!strings.Contains(reply.Error.Traceback, "the user refused to pair") || !strings.Contains(reply.Error.Traceback, "replug") {
		t.Fatalf("/start-tunnel after a refusal = %d %s (%v)", code, body, err)
	}
	if n := d.Stats().TrustPrompts; n != 1 {
		t.Fatalf("/start-tunnel raised the Trust dialog again (%d dialogs)", n)
	}

	// The user replugs and taps Trust: paired and tunnelled without
	// waiting for the slow back-off.
	d.SetTrust(sim.TrustAccept)
	if err := d.Unplug(); err != nil {
		t.Fatal(err)
	}
	if err := d.Replug(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tunnel after a replug", func() bool { return listed(t, r, d.UDID()) })
	if n := d.Stats().TrustPrompts; n != 2 {
		t.Errorf("%d Trust dialogs in all, want 2", n)
	}
}

// TestNoCoreDeviceProxyNotRetried: an iOS 17.0 device over usbmuxd alone
// cannot be tunnelled; the daemon tries once, says which command works,
// and does not loop.
func TestNoCoreDeviceProxyNotRetried(t *testing.T) {
	f := fleetOf(t, 1, "", "17.0")
	var logs testkit.Buffer
	daemon(t, f, withLog(&logs))
	waitFor(t, "the failure in the log", func() bool { return strings.Contains(logs.String(), "not retried") })
	time.Sleep(1500 * time.Millisecond)
	out := logs.String()
	if n := strings.Count(out, "tunnel: attempt failed"); n != 1 {
		t.Errorf("%d failed attempts logged in 1.5 s, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "iosmux start-tunnel --connection usb") {
		t.Errorf("the log does not name the command that works:\n%s", out)
	}
}
