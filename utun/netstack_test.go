package utun

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"golang.zx2c4.com/wireguard/tun"
)

var (
	hostPrefix = netip.MustParsePrefix("fd58:8c92:8961::2/64")
	devPrefix  = netip.MustParsePrefix("fd58:8c92:8961::1/64")
	devAddr    = devPrefix.Addr()
)

// link copies packets both ways between two devices until either fails;
// the returned func closes both and waits.
func link(a, b tun.Device) (stop func()) {
	var wg sync.WaitGroup
	cp := func(dst, src tun.Device) {
		defer wg.Done()
		n := max(src.BatchSize(), 1)
		bufs := make([][]byte, n)
		for i := range bufs {
			bufs[i] = make([]byte, 16+65535)
		}
		sizes := make([]int, n)
		out := make([][]byte, 0, n)
		for {
			k, err := src.Read(bufs, sizes, 16)
			if err != nil {
				return
			}
			out = out[:0]
			for i := range k {
				out = append(out, bufs[i][:16+sizes[i]])
			}
			if _, err := dst.Write(out, 16); err != nil && errors.Is(err, os.ErrClosed) {
				return
			}
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	return func() {
		a.Close()
		b.Close()
		wg.Wait()
	}
}

func newPair(t *testing.T) (host, dev *Netstack, stop func()) {
	t.Helper()
	host, err := NewNetstack(NetstackConfig{Address: hostPrefix, MTU: 16000})
	if err != nil {
		t.Fatal(err)
	}
	dev, err = NewNetstack(NetstackConfig{Address: devPrefix, MTU: 16000})
	if err != nil {
		host.Close()
		t.Fatal(err)
	}
	return host, dev, link(host, dev)
}

func serveBulk(t *testing.T, ln net.Listener) (wait func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if err := testkit.ServeBulk(c); err != nil {
				t.Errorf("bulk server: %v", err)
			}
		}
	}()
	return func() { ln.Close(); <-done }
}

// dialBulk serves testkit's bulk check on dev's port 58783 and connects
// to it from host; cleanups close both.
func dialBulk(t *testing.T, host, dev *Netstack) net.Conn {
	t.Helper()
	ln, err := dev.ListenTCP(netip.AddrPortFrom(netip.IPv6Unspecified(), 58783))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(serveBulk(t, ln))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := host.DialContext(ctx, "tcp6", "[fd58:8c92:8961::1]:58783")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNetstackTCP(t *testing.T) {
	testkit.CheckLeaks(t)
	host, dev, stop := newPair(t)
	defer stop()
	c := dialBulk(t, host, dev)
	if _, err := testkit.Bulk(c, 4<<20, 4<<20); err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().String(); got != "[fd58:8c92:8961::1]:58783" {
		t.Fatalf("remote %s", got)
	}
}

func TestNetstackUDP(t *testing.T) {
	testkit.CheckLeaks(t)
	host, dev, stop := newPair(t)
	defer stop()
	srv, err := dev.ListenUDP(netip.AddrPortFrom(netip.IPv6Unspecified(), 9))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := host.DialContext(context.Background(), "udp6", "[fd58:8c92:8961::1]:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := srv.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("ReadFrom = %q, %v", buf[:n], err)
	}
	if _, err := srv.WriteTo([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err = c.Read(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}

func TestNetstackErrors(t *testing.T) {
	ns, err := NewNetstack(NetstackConfig{Address: hostPrefix, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range []struct{ network, addr string }{
		{"tcp", "fd00::1"},
		{"tcp", "[fd00::1]:x"},
		{"tcp", "host.example:80"},
		{"tcp", "10.0.0.1:80"},
		{"sctp", "[fd00::1]:80"},
	} {
		if _, err := ns.DialContext(ctx, tt.network, tt.addr); err == nil {
			t.Errorf("DialContext(%q, %q) succeeded", tt.network, tt.addr)
		}
	}
	if _, err := NewNetstack(NetstackConfig{Address: netip.MustParsePrefix("10.0.0.1/24"), MTU: 1500}); err == nil {
		t.Error("IPv4 address accepted")
	}
	if _, err := NewNetstack(NetstackConfig{Address: hostPrefix, MTU: 100}); err == nil {
		t.Error("MTU 100 accepted")
	}
	if _, err := ns.Write([][]byte{{0x45, 0, 0, 0}}, 0); err == nil {
		t.Error("IPv4 packet accepted")
	}
	ns.Close()
	ns.Close()
	bufs := [][]byte{make([]byte, 1500)}
	if _, err := ns.Read(bufs, []int{0}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, err := ns.Write(bufs, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if ev := <-ns.Events(); ev != tun.EventUp {
		t.Errorf("first event %v, want EventUp", ev)
	}
	if _, ok := <-ns.Events(); ok {
		t.Error("events not closed")
	}
}

func TestNetstackCloseUnblocksRead(t *testing.T) {
	testkit.CheckLeaks(t)
	ns, err := NewNetstack(NetstackConfig{Address: hostPrefix, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := ns.Read([][]byte{make([]byte, 1500)}, []int{0}, 0)
		errc <- err
	}()
	ns.Close()
	if err := <-errc; !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read = %v, want os.ErrClosed", err)
	}
}

func TestForwarder(t *testing.T) {
	testkit.CheckLeaks(t)
	host, dev, stop := newPair(t)
	defer stop()
	ln, err := dev.ListenTCP(netip.AddrPortFrom(devAddr, 62078))
	if err != nil {
		t.Fatal(err)
	}
	wait := serveBulk(t, ln)
	defer wait()
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fw := NewForwarder(local, netip.AddrPortFrom(devAddr, 62078), host.DialContext, nil)
	defer fw.Close()
	for range 3 {
		c, err := net.Dial("tcp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testkit.Bulk(c, 2<<20, 3<<20); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

func TestForwarderHalfClose(t *testing.T) {
	testkit.CheckLeaks(t)
	host, dev, stop := newPair(t)
	defer stop()
	ln, err := dev.ListenTCP(netip.AddrPortFrom(devAddr, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The device reads to EOF, then answers: it works only if our EOF is
	// passed through as a half-close and the way back stays open.
	srvDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvDone <- err
			return
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		if err == nil {
			_, err = c.Write(append([]byte("got "), b...))
		}
		srvDone <- err
	}()
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fw := NewForwarder(local, netip.AddrPortFrom(devAddr, 7), host.DialContext, nil)
	defer fw.Close()
	c, err := net.Dial("tcp", fw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got ping" {
		t.Fatalf("reply = %q, %v", got, err)
	}
	if err := <-srvDone; err != nil {
		t.Fatal(err)
	}
}

func TestForwarderCloseEndsRelays(t *testing.T) {
	testkit.CheckLeaks(t)
	host, dev, stop := newPair(t)
	defer stop()
	ln, err := dev.ListenTCP(netip.AddrPortFrom(devAddr, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fw := NewForwarder(local, netip.AddrPortFrom(devAddr, 7), host.DialContext, nil)
	c, err := net.Dial("tcp", fw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := <-accepted
	defer d.Close()
	fw.Close() // must not hang on the idle relay
	fw.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("relayed conn still open after Close")
	}
}

// TestNetstackVerifyChecksums writes a UDP datagram with a wrong checksum
// into a stack: the simulated device's (VerifyChecksums) drops it, as an
// iPhone would, and the host's, which trusts the tunnel's authenticated
// transport, delivers it.
func TestNetstackVerifyChecksums(t *testing.T) {
	for _, verify := range []bool{true, false} {
		testkit.CheckLeaks(t)
		ns, err := NewNetstack(NetstackConfig{Address: devPrefix, MTU: 16000, VerifyChecksums: verify})
		if err != nil {
			t.Fatal(err)
		}
		pc, err := ns.ListenUDP(netip.AddrPortFrom(netip.IPv6Unspecified(), 7))
		if err != nil {
			t.Fatal(err)
		}
		payload := []byte("checksum")
		pkt := make([]byte, 16+40+8+len(payload))
		ip := pkt[16:]
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(8+len(payload)))
		ip[6], ip[7] = 17, 64 // UDP, hop limit
		src, dst := hostPrefix.Addr().As16(), devAddr.As16()
		copy(ip[8:], src[:])
		copy(ip[24:], dst[:])
		binary.BigEndian.PutUint16(ip[40:], 5000)
		binary.BigEndian.PutUint16(ip[42:], 7)
		binary.BigEndian.PutUint16(ip[44:], uint16(8+len(payload)))
		binary.BigEndian.PutUint16(ip[46:], 0x1234) // not the checksum
		copy(ip[48:], payload)
		if _, err := ns.Write([][]byte{pkt}, 16); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := pc.ReadFrom(make([]byte, 64))
		switch {
		case verify && err == nil:
			t.Errorf("VerifyChecksums: a datagram with a wrong checksum was delivered (%d bytes)", n)
		case !verify && err != nil:
			t.Errorf("trusting stack: datagram not delivered: %v", err)
		}
		pc.Close()
		ns.Close()
	}
}

// TestNetstackCoalesces writes 16 consecutive segments of a TCP flow in
// one Write: gro merges them, so the stack's IPv6 layer sees one packet.
func TestNetstackCoalesces(t *testing.T) {
	testkit.CheckLeaks(t)
	ns, err := NewNetstack(NetstackConfig{Address: devPrefix, MTU: 16000})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	const segs, size = 16, 2000
	src, dst := hostPrefix.Addr().As16(), devAddr.As16()
	var bufs [][]byte
	for i := range segs {
		pkt := make([]byte, 16+40+20+size)
		ip := pkt[16:]
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(20+size))
		ip[6], ip[7] = 6, 64 // TCP, hop limit
		copy(ip[8:], src[:])
		copy(ip[24:], dst[:])
		tcp := ip[40:]
		binary.BigEndian.PutUint16(tcp[0:], 5000)
		binary.BigEndian.PutUint16(tcp[2:], 58783)
		binary.BigEndian.PutUint32(tcp[4:], uint32(1000+i*size))
		tcp[12] = 5 << 4
		tcp[13] = 0x10 // ACK
		binary.BigEndian.PutUint16(tcp[14:], 65535)
		for j := range size {
			tcp[20+j] = byte(i + j)
		}
		// The transport checksum is left zero: the host's stack trusts
		// the tunnel's transport.
		bufs = append(bufs, pkt)
	}
	before := ns.stack.Stats().IP.PacketsReceived.Value()
	if _, err := ns.Write(bufs, 16); err != nil {
		t.Fatal(err)
	}
	if got := ns.stack.Stats().IP.PacketsReceived.Value() - before; got != 1 {
		t.Errorf("%d consecutive segments reached the IPv6 layer as %d packets, want 1 (GRO)", segs, got)
	}
}

// countingTUN counts the packets Read returns; batch > 0 overrides the
// batch size link reads with.
type countingTUN struct {
	tun.Device
	batch int
	n     atomic.Uint64
}

func (c *countingTUN) BatchSize() int {
	if c.batch > 0 {
		return c.batch
	}
	return c.Device.BatchSize()
}

func (c *countingTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	k, err := c.Device.Read(bufs, sizes, offset)
	c.n.Add(uint64(k))
	return k, err
}

// TestNetstackSegments uploads through a stack whose TCP hands the link
// segments of up to 64 KiB (host GSO): Read must cut them into MSS-sized
// packets with correct checksums, which the peer verifies (VerifyChecksums)
// and acknowledges, and more packets must come out of Read than the stack
// sent.
func TestNetstackSegments(t *testing.T) {
	// One buffer per Read makes every cut segment wait for the next Read.
	for _, batch := range []int{0, 1} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) { testNetstackSegments(t, batch) })
	}
}

func testNetstackSegments(t *testing.T, batch int) {
	testkit.CheckLeaks(t)
	host, err := NewNetstack(NetstackConfig{Address: hostPrefix, MTU: 16000})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := NewNetstack(NetstackConfig{Address: devPrefix, MTU: 16000, VerifyChecksums: true})
	if err != nil {
		host.Close()
		t.Fatal(err)
	}
	ch := &countingTUN{Device: host, batch: batch}
	stop := link(ch, dev)
	defer stop()
	c := dialBulk(t, host, dev)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := testkit.Bulk(c, 8<<20, 0); err != nil {
		t.Fatal(err)
	}
	sent := host.stack.NICInfo()[nicID].Stats.Tx.Packets.Value()
	read := ch.n.Load()
	t.Logf("the stack sent %d packets, Read returned %d", sent, read)
	if read < 2*sent {
		t.Errorf("the stack sent %d packets and Read returned %d: want the stack's segments cut (GSO)", sent, read)
	}
}
