package tunneld

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/internal/retry"
)

// policyErr is an establishment error that chooses its retry.
type policyErr struct {
	msg    string
	policy retryPolicy
}

func (e *policyErr) Error() string      { return e.msg }
func (e *policyErr) Retry() retryPolicy { return e.policy }

func (f *fakeEst) setFailErr(path string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failErr[path] = err
}

func (f *fakeEst) attemptPaths(udid string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.attempts {
		if a.udid == udid {
			out = append(out, fmt.Sprintf("%s@%v", a.path, a.at))
		}
	}
	return out
}

// slowNoJitter is 1 min, 2 min, 4 min.
var slowNoJitter = retry.Backoff{Min: time.Minute, Max: 4 * time.Minute, Jitter: -1}

// TestManagerRefusalWaitsMinutes: after "Don't Trust" (an error asking for
// retrySlow) the device is not asked again within seconds but after the
// slow back-off; an API Start meanwhile answers the refusal without a new
// attempt (a new Trust dialog); a replug asks again at once.
func TestManagerRefusalWaitsMinutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		refused := &policyErr{"the user refused to pair (Don't Trust)", retrySlow}
		est.setFailErr("usbmux-usb", refused)
		est.setFails(udidA, 3)
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter, SlowBackoff: slowNoJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if at := est.attemptTimes(udidA); len(at) != 1 {
			t.Fatalf("attempts in the first 30 s after a refusal at %v; want only the first", at)
		}

		_, err := m.Start(context.Background(), startRequest{UDID: udidA})
		var held *heldError
		if !errors.As(err, &held) || !errors.Is(err, refused) || !strings.Contains(err.Error(), "Don't Trust") ||
			!strings.Contains(err.Error(), "in 30s") {
			t.Fatalf("Start during the refusal's wait: %v; want a heldError carrying the refusal, next try in 30s", err)
		}
		if retryOf(err) != retrySlow {
			t.Errorf("retryOf(Start's error) = %v, want slow", retryOf(err))
		}
		synctest.Wait()
		if at := est.attemptTimes(udidA); len(at) != 1 {
			t.Fatalf("Start made a new attempt (a new Trust dialog): attempts at %v", at)
		}

		// Second refusal at 1 min; the third try is due 2 min later.
		time.Sleep(31 * time.Second)
		synctest.Wait()
		want := []time.Duration{0, time.Minute}
		if at := est.attemptTimes(udidA); fmt.Sprint(at) != fmt.Sprint(want) {
			t.Fatalf("attempts at %v, want %v", at, want)
		}
		// Replug: asked again at once (and refused a third time).
		time.Sleep(10 * time.Second)
		m.Apply(usbEvent(discovery.Detached, udidA, 3))
		m.Apply(usbEvent(discovery.Attached, udidA, 4))
		synctest.Wait()
		want = append(want, 71*time.Second)
		if at := est.attemptTimes(udidA); fmt.Sprint(at) != fmt.Sprint(want) {
			t.Fatalf("after a replug attempts at %v, want %v", at, want)
		}
		// The fourth attempt, one slow step (1 min, started over by the
		// replug) later, succeeds.
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(m.Tunnels()); n != 1 {
			t.Fatalf("%d tunnels after the user accepted, want 1 (attempts %v)", n, est.attemptTimes(udidA))
		}
		if e := m.Stats().Errors["lockdown"]; e != 3 {
			t.Errorf("lockdown errors = %d, want 3", e)
		}
	})
}

// TestManagerPermanentFailure: a path that fails for good (retryOnAttach)
// is not retried in a loop; the device's other path is tried at once
// instead; Start over the failed path says why without trying; the path
// attached anew is tried again.
func TestManagerPermanentFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		noCDP := &policyErr{"no CoreDeviceProxy (iOS 17.0-17.3): use 'iosmux start-tunnel --connection usb'", retryOnAttach}
		est.setFailErr("usbmux-usb", noCDP)
		est.setFails(udidA, 1000)
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if at := est.attemptPaths(udidA); len(at) != 1 {
			t.Fatalf("a permanent failure was retried: attempts %v", at)
		}
		_, err := m.Start(context.Background(), startRequest{UDID: udidA})
		if !errors.Is(err, noCDP) || !strings.Contains(err.Error(), "plugged in again") {
			t.Fatalf("Start after a permanent failure: %v", err)
		}

		// The device's USB-NCM link appears: tried at once, and works.
		est.setFails(udidA, 0)
		m.Apply(ncmEvent(discovery.Attached, udidA))
		synctest.Wait()
		got := m.Tunnels()
		if len(got) != 1 || pathOf(got[0].Path) != "usb-ncm" {
			t.Fatalf("tunnels after the NCM link appeared: %+v (attempts %v)", got, est.attemptPaths(udidA))
		}
	})
}

// TestManagerPermanentFailureReplug: the same path attached anew (replug,
// a new iOS) is tried again.
func TestManagerPermanentFailureReplug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		est := newFakeEst()
		est.setFailErr("usbmux-usb", &policyErr{"no CoreDeviceProxy", retryOnAttach})
		est.setFails(udidA, 1)
		m, _ := newTestManager(t, est, managerConfig{Backoff: noJitter})
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		time.Sleep(time.Minute)
		synctest.Wait()
		// usbmuxd restarted and lists the device again under the same id.
		m.Apply(usbEvent(discovery.Attached, udidA, 3))
		synctest.Wait()
		if at := est.attemptTimes(udidA); len(at) != 2 || len(m.Tunnels()) != 1 {
			t.Fatalf("attempts %v, %d tunnels; want a second attempt at once that succeeds", at, len(m.Tunnels()))
		}
	})
}
