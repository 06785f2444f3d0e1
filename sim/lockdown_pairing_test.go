package sim

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
)

// TestRemotePairingOverLockdown is what 'iosmux pair' does over USB on a
// new device: the classic pairing (one Trust dialog, shown while the Pair
// is pending), then RemotePairing over the lockdown service
// com.apple.dt.remotepairingdeviced.lockdown without another dialog, and
// the record it makes opens tunnels over the USB-NCM stand-in and network
// pairing with a verify only (no new pair-setup, no dialog).
func TestRemotePairingOverLockdown(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Index: 5, Profile: MustProfile("18.2"), Trust: TrustPending})
	ctx := testCtx(t)
	u, ok := r.usbDevice(t, d)
	if !ok {
		t.Fatal("device not in usbmuxd")
	}

	prompts := 0
	rec, paired, err := lockdown.EnsurePaired(ctx, r.client, u, lockdown.PairOptions{
		HostName: "sim-test", PollInterval: 10 * time.Millisecond,
		OnPrompt: func() { prompts++; d.SetTrust(TrustAccept) },
	})
	if err != nil || !paired {
		t.Fatalf("lockdown pairing: paired %v, %v", paired, err)
	}
	if st := d.Stats(); prompts != 1 || st.TrustPrompts != 1 {
		t.Fatalf("prompt callbacks %d, device Trust dialogs %d; want 1 and 1", prompts, st.TrustPrompts)
	}

	store := pairing.RecordStore{Dir: t.TempDir()}
	d.SetTrust(TrustDeny) // the lockdown transport must not ask
	res, err := pairing.Pair(ctx, &pairing.PairConfig{
		Host:  pairing.ClientConfig{HostName: "sim-test", Lockdown: true},
		Store: store,
		Dial: func(ctx context.Context) (pairing.Transport, error) {
			return pairing.DialLockdown(ctx, &lockdown.UsbmuxServices{Mux: r.client, Device: u, Record: rec})
		},
	})
	if err != nil {
		t.Fatalf("RemotePairing over lockdown: %v", err)
	}
	if res.AlreadyPaired || res.ID != d.UDID() {
		t.Errorf("result: already paired %v, identifier %q; want a new pairing filed under %s", res.AlreadyPaired, res.ID, d.UDID())
	}
	st := d.Stats()
	if st.PairSetups != 1 || st.TrustPrompts != 1 {
		t.Fatalf("after pairing over lockdown: %d pair-setups, %d Trust dialogs; want 1 and 1", st.PairSetups, st.TrustPrompts)
	}

	ep := d.Endpoints()
	opt := establish.Options{UDID: d.UDID(), Records: store, HostName: "sim-test",
		NewTUN: func(p tunnel.Params) (tun.Device, error) {
			return utun.NewNetstack(utun.NetstackConfig{Address: p.ClientPrefix(), MTU: p.MTU})
		}}
	for _, path := range []struct {
		name  string
		start func() (*establish.Tunnel, error)
	}{
		{"USB-NCM (untrusted RSD)", func() (*establish.Tunnel, error) {
			return establish.Establish(ctx, discovery.Event{Source: discovery.SourceNCM, Addr: netip.MustParseAddrPort(ep.UntrustedRSD)}, opt)
		}},
		{"network pairing", func() (*establish.Tunnel, error) {
			return establish.Establish(ctx, discovery.Event{Source: discovery.SourceRemotePairing, Addr: netip.MustParseAddrPort(ep.NetworkPairing)}, opt)
		}},
	} {
		tn, err := path.start()
		if err != nil {
			t.Fatalf("%s with the record from lockdown: %v", path.name, err)
		}
		if tn.Identifier != d.UDID() {
			t.Errorf("%s: tunnel to %q", path.name, tn.Identifier)
		}
		tn.Close()
	}
	if st := d.Stats(); st.PairSetups != 1 || st.TrustPrompts != 1 || st.Verifies < 2 {
		t.Errorf("after two tunnels: %d pair-setups, %d Trust dialogs, %d verifies; want 1, 1, ≥2", st.PairSetups, st.TrustPrompts, st.Verifies)
	}

	// Without a lockdown session there is no service: an unknown host's
	// record is refused by StartSession.
	other := *rec
	other.HostID = "00000000-0000-4000-8000-000000000000"
	_, err = (&lockdown.UsbmuxServices{Mux: r.client, Device: u, Record: &other}).StartService(ctx, pairing.LockdownServiceName)
	if !errors.Is(err, lockdown.ErrInvalidHostID) {
		t.Errorf("RemotePairing service with an unknown host: %v; want InvalidHostID", err)
	}
}

// TestLockedDeviceRefusesPair: a device locked with a passcode answers
// Pair with PasswordProtected; unlocked (and trusted) it pairs.
func TestLockedDeviceRefusesPair(t *testing.T) {
	r := newRig(t)
	d := r.device(t, Config{Index: 6, Trust: TrustLocked})
	u, _ := r.usbDevice(t, d)
	_, _, err := lockdown.EnsurePaired(testCtx(t), r.client, u, lockdown.PairOptions{})
	if !errors.Is(err, lockdown.ErrPasswordProtected) {
		t.Fatalf("Pair with a locked device: %v", err)
	}
	d.SetTrust(TrustAccept)
	if _, _, err := lockdown.EnsurePaired(testCtx(t), r.client, u, lockdown.PairOptions{}); err != nil {
		t.Fatalf("Pair once unlocked: %v", err)
	}
	if n := d.Stats().TrustPrompts; n != 2 {
		t.Errorf("Trust dialogs = %d, want 2", n)
	}
}
