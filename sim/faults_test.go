package sim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/utun"
	"github.com/iosmux/iosmux/xpc"
)

// p1 pairs over lockdown and opens a CoreDeviceProxy tunnel.
func (r *rig) p1(t *testing.T, d *Device) (*utun.Netstack, tunnel.Params) {
	t.Helper()
	if _, ok := r.srv.PairRecord(d.UDID()); !ok {
		if _, err := r.pairLockdown(t, d); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := r.coreDeviceProxy(t, d)
	if err != nil {
		t.Fatalf("CoreDeviceProxy: %v", err)
	}
	return hostTunnel(t, testCtx(t), conn)
}

// echoConn dials the echo service inside a tunnel.
func echoConn(t *testing.T, ctx context.Context, ns *utun.Netstack, p tunnel.Params, d *Device) net.Conn {
	t.Helper()
	nc, err := ns.DialContext(ctx, "tcp", joinHostPort(p.ServerAddress.String(), d.TrustedService(EchoService)))
	if err != nil {
		t.Fatalf("dialing echo: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return nc
}

func echoOnce(c net.Conn, msg []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo mismatch")
	}
	return nil
}

func queryType(ctx context.Context, r *rig, id uint32) error {
	lc, err := lockdown.DialUsbmux(ctx, r.client, id, lockdown.ClientConfig{Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer lc.Close()
	typ, err := lc.QueryType(ctx)
	if err == nil && typ != lockdown.TypeLockdown {
		err = errors.New("QueryType = " + typ)
	}
	return err
}

func TestUnplugReplug(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{})
	ctx := testCtx(t)
	ns, p := r.p1(t, d)
	e := echoConn(t, ctx, ns, p, d)
	if err := echoOnce(e, []byte("before")); err != nil {
		t.Fatal(err)
	}
	before, _ := r.usbDevice(t, d)
	ep := d.Endpoints()

	if err := d.Unplug(); err != nil {
		t.Fatal(err)
	}
	if d.State() != StateUnplugged {
		t.Errorf("state %v", d.State())
	}
	if _, ok := r.usbDevice(t, d); ok {
		t.Error("usbmuxd still lists the unplugged device")
	}
	var dl net.Dialer
	if c, err := dl.DialContext(ctx, "tcp", ep.UntrustedRSD); err == nil {
		c.Close()
		t.Error("untrusted RSD (USB-NCM stand-in) still accepts after unplug")
	}
	// Network pairing is Wi-Fi: still there.
	if c, err := dl.DialContext(ctx, "tcp", ep.NetworkPairing); err != nil {
		t.Errorf("network pairing after unplug: %v", err)
	} else {
		c.Close()
	}
	// The tunnel rode on USB: the device side is gone, so echo stops.
	e.SetDeadline(time.Now().Add(2 * time.Second))
	if err := echoOnce(e, []byte("after")); err == nil {
		t.Error("echo through a tunnel over an unplugged cable still works")
	}

	if err := d.Replug(); err != nil {
		t.Fatal(err)
	}
	after, ok := r.usbDevice(t, d)
	if !ok || after.DeviceID == before.DeviceID {
		t.Errorf("after replug: listed %v, DeviceID %d (was %d)", ok, after.DeviceID, before.DeviceID)
	}
	if got := d.Endpoints(); got.UntrustedRSD != ep.UntrustedRSD || got.BootSessionUUID != ep.BootSessionUUID {
		t.Errorf("replug changed the RSD address or boot: %+v vs %+v", got, ep)
	}
	ns, p = r.p1(t, d)
	if err := echoOnce(echoConn(t, ctx, ns, p, d), []byte("again")); err != nil {
		t.Errorf("tunnel after replug: %v", err)
	}
}

func TestReboot(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{})
	ctx := testCtx(t)
	ns, p := r.p1(t, d)
	before := d.Endpoints()
	oldEcho := d.TrustedService(EchoService)

	if err := d.Reboot(0); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitState(ctx, StatePlugged); err != nil {
		t.Fatal(err)
	}
	after := d.Endpoints()
	if after.BootSessionUUID == before.BootSessionUUID || after.RSDUUID == before.RSDUUID {
		t.Errorf("reboot kept boot %s / RSD %s", after.BootSessionUUID, after.RSDUUID)
	}
	if after.TrustedRSDPort == before.TrustedRSDPort && d.TrustedService(EchoService) == oldEcho {
		t.Errorf("reboot kept the ports (RSD %d, echo %d)", after.TrustedRSDPort, oldEcho)
	}
	if after.UntrustedRSD != before.UntrustedRSD {
		t.Errorf("untrusted RSD moved from %s to %s", before.UntrustedRSD, after.UntrustedRSD)
	}
	// The old tunnel is dead: its device end went with the boot.
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if c, err := ns.DialContext(dctx, "tcp", joinHostPort(p.ServerAddress.String(), p.ServerRSDPort)); err == nil {
		c.Close()
		t.Error("old tunnel still reaches the RSD after reboot")
	}
	cancel()
	// Pairing survives; a new tunnel reaches the new boot.
	ns, p = r.p1(t, d)
	c := trustedRSD(t, ctx, ns, p, xpc.UUID{})
	if got := c.Handshake.Properties.UUID("BootSessionUUID").String(); got != after.BootSessionUUID {
		t.Errorf("RSD BootSessionUUID %s, want %s", got, after.BootSessionUUID)
	}
	if d.Stats().Boots != 2 {
		t.Errorf("boots %d", d.Stats().Boots)
	}
}

func TestRebootWhileUnplugged(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{})
	ctx := testCtx(t)
	d.Unplug()
	d.Reboot(0)
	if err := d.WaitState(ctx, StateUnplugged); err != nil {
		t.Fatal(err)
	}
	if d.Stats().Boots != 2 {
		t.Fatalf("boots %d", d.Stats().Boots)
	}
	if _, ok := r.usbDevice(t, d); ok {
		t.Error("a device rebooted with the cable out appeared in usbmuxd")
	}
	d.Replug()
	if _, ok := r.usbDevice(t, d); !ok {
		t.Error("replugged device missing")
	}
}

func TestStall(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{})
	ctx := testCtx(t)
	u, _ := r.usbDevice(t, d)
	if err := queryType(ctx, r, u.DeviceID); err != nil {
		t.Fatal(err)
	}
	d.Stall(true)
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := queryType(sctx, r, u.DeviceID)
	cancel()
	if err == nil {
		t.Fatal("a stalled device answered QueryType")
	}
	if !d.Faults().Stalled {
		t.Error("Faults does not report the stall")
	}
	d.Stall(false)
	if err := queryType(ctx, r, u.DeviceID); err != nil {
		t.Errorf("after the stall: %v", err)
	}
}

func TestResetMidStream(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{})
	ctx := testCtx(t)
	id := mustUSB(t, r, d).DeviceID
	lc, err := lockdown.DialUsbmux(ctx, r.client, id, lockdown.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	if _, err := lc.QueryType(ctx); err != nil {
		t.Fatal(err)
	}
	// Armed at 4 KiB: a few exchanges (a few hundred bytes each) pass, then
	// the connection is cut inside one.
	d.Reset(4 << 10)
	ok := 0
	for ; ok < 100; ok++ {
		if _, err := lc.QueryType(ctx); err != nil {
			break
		}
	}
	if ok == 0 || ok == 100 {
		t.Errorf("%d exchanges passed before the reset armed at 4 KiB (want some, then a cut)", ok)
	}
	// New connections are not affected.
	if err := queryType(ctx, r, id); err != nil {
		t.Errorf("after the reset: %v", err)
	}
	// Reset(0) drops everything at once, tunnels included.
	ns, p := r.p1(t, d)
	e := echoConn(t, ctx, ns, p, d)
	if err := echoOnce(e, []byte("before")); err != nil {
		t.Fatal(err)
	}
	lc2, err := lockdown.DialUsbmux(ctx, r.client, id, lockdown.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer lc2.Close()
	// One exchange first: the device takes a USB connection as its own only
	// after usbmuxd has answered the Connect, so a Reset right after the
	// dial could miss it.
	if _, err := lc2.QueryType(ctx); err != nil {
		t.Fatal(err)
	}
	d.Reset(0)
	if _, err := lc2.QueryType(ctx); err == nil {
		t.Error("lockdown connection survived Reset(0)")
	}
	e.SetDeadline(time.Now().Add(2 * time.Second))
	if err := echoOnce(e, []byte("after")); err == nil {
		t.Error("tunnel survived Reset(0)")
	}
}

func mustUSB(t *testing.T, r *rig, d *Device) usbmux.DeviceEntry {
	t.Helper()
	u, ok := r.usbDevice(t, d)
	if !ok {
		t.Fatalf("%s not in usbmuxd", d.UDID())
	}
	return u
}

func TestGarbage(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{})
	ctx := testCtx(t)
	id := mustUSB(t, r, d).DeviceID
	d.Garbage(true)
	if err := queryType(ctx, r, id); err == nil {
		t.Fatal("QueryType succeeded against garbage replies")
	}
	var dl net.Dialer
	nc, err := dl.DialContext(ctx, "tcp", d.Endpoints().UntrustedRSD)
	if err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if c, err := rsd.NewClient(hctx, nc, nil); err == nil {
		c.Close()
		t.Error("RSD handshake succeeded against garbage")
	}
	cancel()
	d.Garbage(false)
	if err := queryType(ctx, r, id); err != nil {
		t.Errorf("after garbage: %v", err)
	}
}

func TestTrustRefused(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Trust: TrustDeny})
	ctx := testCtx(t)
	if _, err := r.pairLockdown(t, d); !errors.Is(err, lockdown.ErrUserDeniedPairing) {
		t.Errorf("lockdown Pair with Trust refused = %v", err)
	}
	ep := d.Endpoints()
	_, err := pairing.Pair(ctx, &pairing.PairConfig{Host: pairing.ClientConfig{HostName: "sim-test"},
		Dial: rppDial(ep.NetworkPairing), Store: pairing.RecordStore{Dir: t.TempDir()}})
	if !errors.Is(err, pairing.ErrRejected) {
		t.Errorf("RemotePairing with Trust refused = %v", err)
	}
	// Pending: the dialog stays up; the host gives up.
	d.SetTrust(TrustPending)
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = pairing.Pair(pctx, &pairing.PairConfig{Host: pairing.ClientConfig{HostName: "sim-test"},
		Dial: rppDial(ep.NetworkPairing), Store: pairing.RecordStore{Dir: t.TempDir()}})
	cancel()
	if err == nil {
		t.Error("pairing completed while the Trust dialog was pending")
	}
	d.SetTrust(TrustAccept)
	if _, err := r.pairLockdown(t, d); err != nil {
		t.Errorf("lockdown Pair after Trust: %v", err)
	}
	if d.Stats().PairSetups != 0 {
		t.Errorf("pair-setups %d", d.Stats().PairSetups)
	}
}
