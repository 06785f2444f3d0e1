package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/lockdown"
)

// TestLockdownCommand is idevicepair's pair, validate and unpair, with the
// outcomes a user causes as non-zero exits that say what to do.
func TestLockdownCommand(t *testing.T) {
	r := newMuxRig(t)
	run := func(args ...string) (int, string, string) {
		return runMux(t, r.env, append([]string{"lockdown"}, args...)...)
	}

	if code, _, errs := run("validate"); code != 1 || !strings.Contains(errs, "not paired") || !strings.Contains(errs, "iosmux lockdown pair") {
		t.Errorf("validate unpaired: exit %d, %q", code, errs)
	}
	if code, _, errs := run("unpair"); code != 1 || !strings.Contains(errs, "no pair record") {
		t.Errorf("unpair unpaired: exit %d, %q", code, errs)
	}
	for _, tt := range []struct {
		answer lockdown.TrustAnswer
		want   string
	}{
		{lockdown.TrustDeny, "Don't Trust"},
		{lockdown.TrustLocked, "locked with a passcode"},
	} {
		r.trust.Store(int32(tt.answer))
		if code, out, errs := run("pair"); code != 1 || !strings.Contains(errs, tt.want) || strings.Contains(out, "SUCCESS") {
			t.Errorf("pair answered %v: exit %d, %q %q", tt.answer, code, out, errs)
		}
	}

	r.trust.Store(int32(lockdown.TrustPending))
	code, out, errs := run("pair", "--udid", muxTestUDID)
	if code != 0 || !strings.Contains(out, trustPrompt) || !strings.Contains(out, "SUCCESS: Paired with device "+muxTestUDID) {
		t.Fatalf("pair: exit %d, %q %q", code, out, errs)
	}
	code, out, errs = run("pair", "--json")
	var res lockdownResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.NewPairing || res.HostID == "" || res.UDID != muxTestUDID {
		t.Errorf("pair again --json: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs := run("validate"); code != 0 || !strings.Contains(out, "SUCCESS: Validated pairing") {
		t.Errorf("validate: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs := run("unpair"); code != 0 || !strings.Contains(out, "SUCCESS: Unpaired") || len(r.dev.HostIDs()) != 0 {
		t.Errorf("unpair: exit %d, %q %q, device hosts %v", code, out, errs, r.dev.HostIDs())
	}
	if code, _, _ := run("validate"); code != 1 {
		t.Errorf("validate after unpair: exit %d", code)
	}
	if code, _, _ := run("frobnicate"); code != 2 {
		t.Errorf("unknown action: exit %d, want 2", code)
	}
}
