package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// rsdDevice is a device serving the bulk service on its RSD port.
func rsdDevice(t *testing.T) *Server {
	t.Helper()
	dev := newTestDevice(t, Faults{})
	ln, err := dev.ListenTCP(testRSDPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testkit.ServeBulkListener(ln, nil))
	return dev
}

// firstSYN opens a session on dev over an in-memory pipe and makes a SYN
// from src to the device's RSD port the very first packet the host sends.
// It returns once the device has answered with a SYN-ACK on this session,
// or with an error after wait.
func firstSYN(t *testing.T, dev *Server, src func(Params) netip.Addr, port uint16, wait time.Duration) (Params, net.Conn, error) {
	t.Helper()
	a, b := testkit.Pipe()
	t.Cleanup(func() { a.Close() })
	errc := make(chan error, 1)
	go func() {
		_, err := dev.StartSession(context.Background(), b)
		errc <- err
	}()
	params, err := ClientHandshake(context.Background(), a, StreamMTU)
	if err != nil {
		t.Fatal(err)
	}
	syn := makeTCP(src(params), params.ServerAddress, tcpFlagSYN, mssOpt(1400), nil)
	binary.BigEndian.PutUint16(syn[ipv6HeaderLen:], port)
	binary.BigEndian.PutUint16(syn[ipv6HeaderLen+16:], 0)
	binary.BigEndian.PutUint16(syn[ipv6HeaderLen+16:], upperChecksum(syn, protoTCP))
	if _, err := a.Write(syn); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return params, a, waitSYNACK(a, syn, wait)
}

const testFlagACK = 0x10

// waitSYNACK reads packets from the host's end of a session until the
// SYN-ACK answering syn arrives.
func waitSYNACK(c net.Conn, syn []byte, wait time.Duration) error {
	sc := NewStreamConn(c, StreamMTU)
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	bufs, sizes := makeBufs(8, StreamMTU)
	for {
		n, err := sc.ReadPackets(bufs, sizes, 0)
		for i := range n {
			p := bufs[i][:sizes[i]]
			if len(p) >= ipv6HeaderLen+tcpMinHdrLen && p[6] == protoTCP &&
				p[ipv6HeaderLen+13]&(tcpFlagSYN|testFlagACK) == tcpFlagSYN|testFlagACK &&
				[16]byte(p[24:40]) == [16]byte(syn[8:24]) &&
				binary.BigEndian.Uint16(p[ipv6HeaderLen+2:]) == binary.BigEndian.Uint16(syn[ipv6HeaderLen:]) {
				return nil
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return errors.New("no SYN-ACK")
		}
		if err != nil {
			return err
		}
	}
}

// TestDeviceAnswersFirstSYN: every session's first packet is a SYN, from
// the host's tunnel address or, as a Linux host sends while that address is
// still tentative (pymobiledevice3 and go-ios add it without NODAD), from
// another of the host's addresses. The device answers each at once, on the
// session it came from. Before the device learned the other sources, every
// second session here went unanswered for good (the SYN-ACK went to no
// session), and one in a hundred of the others waited a second for the
// SYN-ACK's retransmission (the session was registered after its pump had
// delivered the SYN).
func TestDeviceAnswersFirstSYN(t *testing.T) {
	testkit.CheckLeaks(t)
	dev := rsdDevice(t)
	own := func(p Params) netip.Addr { return p.ClientAddress }
	other := netip.MustParseAddr("fd99:1:2:3::9") // the host's address on another interface
	foreign := func(Params) netip.Addr { return other }
	const n = 60
	for i := range n {
		src := own
		if i%2 == 1 {
			src = foreign
		}
		// Below gVisor's one-second SYN-ACK retransmission, so a first
		// SYN-ACK lost in the device fails here too.
		params, c, err := firstSYN(t, dev, src, uint16(40000+i), 900*time.Millisecond)
		if err != nil {
			t.Fatalf("session %d (%v, first SYN from %v): %v", i, params.ClientAddress, src(params), err)
		}
		c.Close()
	}
}

// TestDeviceLearnedSources: replies to a learned source go down the session
// that sent from it, only while that session lives, and a host cannot make
// the device learn more than learnedPerSession addresses.
func TestDeviceLearnedSources(t *testing.T) {
	testkit.CheckLeaks(t)
	dev := rsdDevice(t)
	other := netip.MustParseAddr("fd99::9")
	_, c1, err := firstSYN(t, dev, func(Params) netip.Addr { return other }, 40001, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A second host sending from the same address takes it over.
	p2, c2, err := firstSYN(t, dev, func(Params) netip.Addr { return other }, 40002, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c1.Close()
	// Many more sources from session 2: only learnedPerSession stick.
	for i := range 3 * learnedPerSession {
		src := netip.AddrFrom16([16]byte{0xfd, 0x77, 15: byte(i + 1)})
		syn := makeTCP(src, p2.ServerAddress, tcpFlagSYN, nil, nil)
		if _, err := c2.Write(syn); err != nil {
			t.Fatal(err)
		}
	}
	learned := func() int {
		dev.mu.Lock()
		defer dev.mu.Unlock()
		return len(dev.learned)
	}
	deadline := time.Now().Add(5 * time.Second)
	for learned() < learnedPerSession && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := learned(); got != learnedPerSession {
		t.Fatalf("%d learned addresses, want %d", got, learnedPerSession)
	}
	// The SYN-ACKs to the sources beyond the bound went nowhere.
	for dev.Unroutable() < 2*learnedPerSession && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if u := dev.Unroutable(); u < 2*learnedPerSession {
		t.Fatalf("%d packets unroutable, want at least %d", u, 2*learnedPerSession)
	}
	c2.Close()
	for learned() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := learned(); got != 0 {
		t.Fatalf("%d learned addresses left after every session ended", got)
	}
}
