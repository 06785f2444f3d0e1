package sim

import (
	"context"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
)

func mustUUID(t *testing.T, s string) xpc.UUID {
	u, err := xpc.ParseUUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// dialService connects to a trusted service port inside the tunnel.
func dialService(ctx context.Context, ns *utun.Netstack, p tunnel.Params, port uint16) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", joinHostPort(p.ServerAddress.String(), port))
	if err == nil {
		c.Close()
	}
	return err
}

// waitFor polls cond until it holds or ctx ends (waiting for the device to
// process a message it has been sent; not a timing assertion).
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestPeerReattach27: on iOS 27.2 a new RSD peer with a different UUID
// closes every advertised port; the same UUID keeps them; one RSD session
// per tunnel.
func TestPeerReattach27(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("27.2")})
	ctx := testCtx(t)
	ns, p := r.p1(t, d)
	hostA := mustUUID(t, "11111111-2222-4333-8444-555555555555")
	hostB := mustUUID(t, "66666666-7777-4888-8999-aaaaaaaaaaaa")

	a := trustedRSD(t, ctx, ns, p, hostA)
	echoA, _ := a.Handshake.Service(EchoService)
	if err := dialService(ctx, ns, p, echoA.Port); err != nil {
		t.Fatalf("echo on the first peer's port: %v", err)
	}
	// The same host again: one session per tunnel, so the first closes,
	// but the ports stay.
	a2 := trustedRSD(t, ctx, ns, p, hostA)
	select {
	case <-a.Conn().Done():
	case <-ctx.Done():
		t.Fatal("the first RSD session stayed open next to a second one on the same tunnel")
	}
	if s, _ := a2.Handshake.Service(EchoService); s.Port != echoA.Port {
		t.Errorf("same host UUID moved echo from %d to %d", echoA.Port, s.Port)
	}
	if d.Stats().Reattaches != 0 {
		t.Fatalf("reattached for the same UUID")
	}

	// A different UUID: every advertised port closes.
	trustedRSD(t, ctx, ns, p, hostB)
	waitFor(t, ctx, "the reattach", func() bool { return d.Stats().Reattaches == 1 })
	if err := dialService(ctx, ns, p, echoA.Port); err == nil {
		t.Error("the old echo port still accepts after the peer changed")
	}
	// Rediscovery with the stable UUID finds working ports.
	b := trustedRSD(t, ctx, ns, p, hostB)
	echoB, _ := b.Handshake.Service(EchoService)
	if echoB.Port == echoA.Port {
		t.Errorf("echo kept port %d", echoB.Port)
	}
	if err := dialService(ctx, ns, p, echoB.Port); err != nil {
		t.Errorf("echo on the new port: %v", err)
	}
	if d.Stats().Reattaches != 1 {
		t.Errorf("reattaches %d", d.Stats().Reattaches)
	}
}

// TestNoReattachBefore27: older releases keep their ports whoever asks.
func TestNoReattachBefore27(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Profile: MustProfile("18.2")})
	ctx := testCtx(t)
	ns, p := r.p1(t, d)
	a := trustedRSD(t, ctx, ns, p, mustUUID(t, "11111111-2222-4333-8444-555555555555"))
	b := trustedRSD(t, ctx, ns, p, mustUUID(t, "66666666-7777-4888-8999-aaaaaaaaaaaa"))
	sa, _ := a.Handshake.Service(EchoService)
	sb, _ := b.Handshake.Service(EchoService)
	if sa.Port != sb.Port {
		t.Errorf("ports moved on 18.2: %d → %d", sa.Port, sb.Port)
	}
	select {
	case <-a.Conn().Done():
		t.Error("18.2 closed the first RSD session")
	default:
	}
	if err := dialService(ctx, ns, p, sa.Port); err != nil {
		t.Error(err)
	}
}
