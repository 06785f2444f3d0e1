package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/utun"
)

// TestUSB2Realism: a device as awkward as a USB 2 iPhone (drops above
// 8 KiB, one packet per read, 40 MB/s) still carries a bulk transfer from
// our host side, which keeps packets under the limit (tunnel.md §3.1).
func TestUSB2Realism(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Realism: USB2})
	ctx := testCtx(t)
	ns, p := r.p1(t, d)
	sink, err := ns.DialContext(ctx, "tcp", joinHostPort(p.ServerAddress.String(), d.TrustedService(SinkService)))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sink.SetDeadline(time.Now().Add(30 * time.Second))
	payload := make([]byte, 8<<20)
	io.ReadFull(SourceStream(), payload)
	if _, err := sink.Write(payload); err != nil {
		t.Fatal(err)
	}
	sink.(interface{ CloseWrite() error }).CloseWrite()
	var out [40]byte
	if _, err := io.ReadFull(sink, out[:]); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	if binary.BigEndian.Uint64(out[:8]) != uint64(len(payload)) || !bytes.Equal(out[8:], sum[:]) {
		t.Errorf("sink got %d bytes", binary.BigEndian.Uint64(out[:8]))
	}
	// Boundary violations are not asserted: the host's service TLS
	// (lockdown.OpenService, crypto/tls) sizes its first records to one TCP
	// segment, splitting the first packets of a tunnel across records; the
	// device drops those reads and TCP resends them. With
	// tls.Config.DynamicRecordSizingDisabled the count is 0.
	st := d.Stats()
	if st.DroppedAbove != 0 {
		t.Errorf("a host keeping packets under 8 KiB had %d dropped", st.DroppedAbove)
	}
	t.Logf("boundary violations at the start of the tunnel: %d", st.BoundaryViolations)
}

// TestDropOversize: a host sending packets above the device's limit under
// sustained load loses them.
func TestDropOversize(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Realism: Realism{DropAbove: 8192, DropAfter: 256 << 10}})
	ctx := testCtx(t)
	if _, err := r.pairLockdown(t, d); err != nil {
		t.Fatal(err)
	}
	conn, err := r.coreDeviceProxy(t, d)
	if err != nil {
		t.Fatal(err)
	}
	params, err := tunnel.ClientHandshake(ctx, conn, tunnel.StreamMTU)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := utun.NewNetstack(utun.NetstackConfig{Address: params.ClientPrefix(), MTU: params.MTU})
	if err != nil {
		t.Fatal(err)
	}
	// A host that ignores the 8 KiB rule: segments up to the full MTU.
	pump, err := tunnel.NewPump(tunnel.PumpConfig{TUN: ns, Conn: tunnel.NewStreamConn(conn, params.MTU), MTU: params.MTU,
		MaxSendPacket: params.MTU, Local: params.ClientAddress, Peer: params.ServerAddress})
	if err != nil {
		t.Fatal(err)
	}
	defer pump.Close()
	sink, err := ns.DialContext(ctx, "tcp", joinHostPort(params.ServerAddress.String(), d.TrustedService(SinkService)))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	go func() {
		sink.SetWriteDeadline(time.Now().Add(20 * time.Second))
		sink.Write(make([]byte, 4<<20))
	}()
	waitFor(t, ctx, "oversize drops", func() bool { return d.Stats().DroppedAbove > 0 })
}

// TestReadBoundary: a host that merges two packets into one write trips
// the device's one-packet-per-read forwarder.
func TestReadBoundary(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	d := r.device(t, Config{Realism: Realism{Boundary: tunnel.BoundaryDrop}})
	ctx := testCtx(t)
	if _, err := r.pairLockdown(t, d); err != nil {
		t.Fatal(err)
	}
	conn, err := r.coreDeviceProxy(t, d)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	params, err := tunnel.ClientHandshake(ctx, conn, tunnel.StreamMTU)
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 40) // IPv6, no payload, next header 59 (none)
	pkt[0] = 0x60
	pkt[6], pkt[7] = 59, 64
	copy(pkt[8:24], params.ClientAddress.AsSlice())
	copy(pkt[24:40], params.ServerAddress.AsSlice())
	if _, err := conn.Write(append(append([]byte{}, pkt...), pkt...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "a boundary violation", func() bool { return d.Stats().BoundaryViolations > 0 })
}
