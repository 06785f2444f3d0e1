package tunnel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/utun"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

const testRSDPort = 58783

// hostOverNetstack runs the host role against dev over an in-memory pipe:
// handshake, a userspace stack as the host's TUN, and a pump.
func hostOverNetstack(t *testing.T, dev *Server, cfg PumpConfig) (*Pump, *utun.Netstack, Params) {
	t.Helper()
	a, b := testkit.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sessc := make(chan error, 1)
	go func() {
		_, err := dev.StartSession(ctx, b)
		sessc <- err
	}()
	params, err := ClientHandshake(ctx, a, StreamMTU)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-sessc; err != nil {
		t.Fatalf("device session: %v", err)
	}
	ns, err := utun.NewNetstack(utun.NetstackConfig{Address: params.ClientPrefix(), MTU: params.MTU})
	if err != nil {
		t.Fatal(err)
	}
	cfg.TUN = ns
	cfg.Conn = NewStreamConn(a, params.MTU)
	cfg.MTU = params.MTU
	cfg.Local = params.ClientAddress
	cfg.Peer = params.ServerAddress
	p, err := NewPump(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, ns, params
}

// serveBulk runs testkit's bulk server on ln, logging a connection's error
// while the test has not failed; the returned func stops it.
func serveBulk(t *testing.T, ln net.Listener) (wait func()) {
	t.Helper()
	return testkit.ServeBulkListener(ln, func(err error) {
		if !t.Failed() {
			t.Logf("device service: %v", err)
		}
	})
}

func TestPumpInMemoryBothRoles(t *testing.T) {
	testkit.CheckLeaks(t)
	dev, err := NewServer(ServerConfig{
		RSDPort: testRSDPort,
		Rand:    testkit.Rand(1),
		// Any host→device packet above what we promise to send is dropped
		// and counted: the count must stay zero.
		Faults: Faults{DropAbove: DefaultMaxSendPacket},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ln, err := dev.ListenTCP(testRSDPort)
	if err != nil {
		t.Fatal(err)
	}
	wait := serveBulk(t, ln)
	defer wait()

	pump, ns, params := hostOverNetstack(t, dev, PumpConfig{})
	if params.ServerAddress != dev.Address() || params.ServerRSDPort != testRSDPort || params.MTU != StreamMTU {
		t.Fatalf("params = %+v", params)
	}
	if want := dev.prefix.Addr().Next().Next(); params.ClientAddress != want {
		t.Fatalf("client address %v, want %v", params.ClientAddress, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := ns.DialTCP(ctx, netip.AddrPortFrom(params.ServerAddress, testRSDPort))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testkit.Bulk(c, 8<<20, 8<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()

	st := pump.Stats()
	if st.Clamped == 0 {
		t.Error("the device's SYN-ACK MSS was not clamped")
	}
	if st.TooBig != 0 || st.NotIPv6 != 0 || st.Oversize != 0 {
		t.Errorf("unexpected drops: %+v", st)
	}
	if st.Probes == 0 || st.ProbeReplies == 0 {
		t.Errorf("liveness probe not answered: %+v", st)
	}
	if st.SentBytes < 8<<20 || st.ReceivedBytes < 8<<20 {
		t.Errorf("counters too low: %+v", st)
	}
	pump.Close()
	if !errors.Is(pump.Err(), net.ErrClosed) {
		t.Fatalf("Err after Close = %v, want net.ErrClosed", pump.Err())
	}
}

func TestPumpRejectsBadConfig(t *testing.T) {
	ct := tuntest.NewChannelTUN()
	a, b := testkit.Pipe()
	defer b.Close()
	if _, err := NewPump(PumpConfig{TUN: ct.TUN(), Conn: NewStreamConn(a, 1500), MTU: 100}); err == nil {
		t.Fatal("MTU 100 accepted")
	}
	// The pump owns what it was given, even on failure.
	if _, err := a.Write([]byte{1}); err == nil {
		t.Fatal("conn not closed after a failed NewPump")
	}
}

// fakeDevice reads packets on its end of the pipe and answers echo requests
// while answer returns true.
func fakeDevice(c *StreamConn, answer func() bool) {
	bufs, sizes := makeBufs(16, StreamMTU)
	var reply []byte
	for {
		n, err := c.ReadPackets(bufs, sizes, 0)
		if err != nil {
			return
		}
		for i := range n {
			pkt := bufs[i][:sizes[i]]
			id, ok := echoID(pkt, icmpv6EchoRequest)
			if !ok || !answer() {
				continue
			}
			src, _ := netip.AddrFromSlice(pkt[8:24])
			dst, _ := netip.AddrFromSlice(pkt[24:40])
			reply = appendEcho(reply[:0], icmpv6EchoReply, dst, src, id, 0, nil)
			if c.WritePacket(reply) != nil {
				return
			}
		}
	}
}

// drain empties the channel TUN's inbound side until stop.
func drain(ct *tuntest.ChannelTUN, stop <-chan struct{}) {
	for {
		select {
		case <-ct.Inbound:
		case <-stop:
			return
		}
	}
}

func TestProbeDeclaresSilentDeviceDead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ct := tuntest.NewChannelTUN()
		a, b := testkit.Pipe()
		start := time.Now()
		silentAt := start.Add(10 * time.Second)
		devConn := NewStreamConn(b, StreamMTU)
		go fakeDevice(devConn, func() bool { return time.Now().Before(silentAt) })
		p, err := NewPump(PumpConfig{TUN: ct.TUN(), Conn: NewStreamConn(a, StreamMTU), MTU: StreamMTU, Local: hostAddr, Peer: devAddr})
		if err != nil {
			t.Fatal(err)
		}
		go drain(ct, p.Done())
		<-p.Done()
		devConn.Close()
		if !errors.Is(p.Err(), ErrDead) {
			t.Fatalf("Err = %v, want ErrDead", p.Err())
		}
		// The last reply came at most one interval before silentAt.
		dead := time.Since(silentAt)
		if dead < DefaultProbeTimeout-DefaultProbeInterval || dead > DefaultProbeTimeout+DefaultProbeInterval {
			t.Fatalf("declared dead %v after the device went silent, want about %v", dead, DefaultProbeTimeout)
		}
		if dead > 5*time.Second {
			t.Fatalf("declared dead after %v, want within 5s", dead)
		}
	})
}

func TestProbeSparesDeviceThatIgnoresEcho(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ct := tuntest.NewChannelTUN()
		a, b := testkit.Pipe()
		devConn := NewStreamConn(b, StreamMTU)
		go fakeDevice(devConn, func() bool { return false })
		p, err := NewPump(PumpConfig{TUN: ct.TUN(), Conn: NewStreamConn(a, StreamMTU), MTU: StreamMTU, Local: hostAddr, Peer: devAddr})
		if err != nil {
			t.Fatal(err)
		}
		go drain(ct, p.Done())
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if p.Err() != nil {
			t.Fatalf("pump stopped: %v", p.Err())
		}
		// Probes back off once the device has shown it ignores them.
		if n := p.Stats().Probes; n < unarmedProbes || n > unarmedProbes+50 {
			t.Fatalf("%d probes in 5 minutes, want a backed-off few", n)
		}
		p.Close()
		devConn.Close()
	})
}

func TestProbeFiresWhileTransportStalls(t *testing.T) {
	// The device answers probes for a while, then stops reading altogether:
	// the host's writes block on a full pipe, and the deadline must still
	// fire.
	synctest.Test(t, func(t *testing.T) {
		ct := tuntest.NewChannelTUN()
		a, b := testkit.PipeSize(64 << 10)
		devConn := NewStreamConn(b, StreamMTU)
		stallAt := time.Now().Add(2 * time.Second)
		stop := make(chan struct{})
		go func() {
			bufs, sizes := makeBufs(16, StreamMTU)
			for time.Now().Before(stallAt) {
				n, err := devConn.ReadPackets(bufs, sizes, 0)
				if err != nil {
					return
				}
				for i := range n {
					pkt := bufs[i][:sizes[i]]
					if id, ok := echoID(pkt, icmpv6EchoRequest); ok {
						devConn.WritePacket(appendEcho(nil, icmpv6EchoReply, devAddr, hostAddr, id, 0, nil))
					}
				}
			}
			<-stop // stalled: never reads again
		}()
		p, err := NewPump(PumpConfig{TUN: ct.TUN(), Conn: NewStreamConn(a, StreamMTU), MTU: StreamMTU, Local: hostAddr, Peer: devAddr})
		if err != nil {
			t.Fatal(err)
		}
		go drain(ct, p.Done())
		// Once the device stalls, the host keeps sending until the pipe is
		// full. (Flooding earlier would keep the bubble busy forever: time
		// only moves when every goroutine waits.)
		go func() {
			time.Sleep(time.Until(stallAt))
			pkt := makeTCP(hostAddr, devAddr, 0x10, nil, make([]byte, 4000))
			for {
				select {
				case ct.Outbound <- pkt:
				case <-p.Done():
					return
				}
			}
		}()
		<-p.Done()
		close(stop)
		devConn.Close()
		if !errors.Is(p.Err(), ErrDead) {
			t.Fatalf("Err = %v, want ErrDead", p.Err())
		}
		if p.Stats().ProbeReplies == 0 {
			t.Fatal("no probe was answered before the stall")
		}
		if d := time.Since(stallAt); d > 5*time.Second {
			t.Fatalf("declared dead %v after the stall, want within 5s", d)
		}
	})
}

// flakyTUN fails its first reads with a transient error, then behaves.
type flakyTUN struct {
	tun.Device
	mu    sync.Mutex
	fails int
}

func (f *flakyTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return 0, errors.New("unsupported virtio GSO type")
	}
	f.mu.Unlock()
	return f.Device.Read(bufs, sizes, offset)
}

func TestPumpSurvivesTransientTUNReadErrors(t *testing.T) {
	testkit.CheckLeaks(t)
	ct := tuntest.NewChannelTUN()
	a, b := testkit.Pipe()
	devConn := NewStreamConn(b, StreamMTU)
	defer devConn.Close()
	p, err := NewPump(PumpConfig{TUN: &flakyTUN{Device: ct.TUN(), fails: 5}, Conn: NewStreamConn(a, StreamMTU), MTU: StreamMTU, Probe: ProbeConfig{Disable: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pkt := makeTCP(hostAddr, devAddr, 0x10, nil, []byte("after the errors"))
	ct.Outbound <- pkt
	bufs, sizes := makeBufs(1, StreamMTU)
	n, err := devConn.ReadPackets(bufs, sizes, 0)
	if err != nil || n != 1 || string(bufs[0][:sizes[0]]) != string(pkt) {
		t.Fatalf("device got %d packets, %v", n, err)
	}
	if got := p.Stats().TUNReadErrors; got != 5 {
		t.Fatalf("TUNReadErrors = %d, want 5", got)
	}
}

func TestPumpEndsOnPersistentTUNReadErrors(t *testing.T) {
	testkit.CheckLeaks(t)
	ct := tuntest.NewChannelTUN()
	a, b := testkit.Pipe()
	defer b.Close()
	p, err := NewPump(PumpConfig{TUN: &flakyTUN{Device: ct.TUN(), fails: 1 << 30}, Conn: NewStreamConn(a, StreamMTU), MTU: StreamMTU, Probe: ProbeConfig{Disable: true}})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if p.Err() == nil || errors.Is(p.Err(), net.ErrClosed) {
		t.Fatalf("Err = %v, want the TUN's error", p.Err())
	}
}

func TestPumpFiltersAndTooBig(t *testing.T) {
	testkit.CheckLeaks(t)
	ct := tuntest.NewChannelTUN()
	a, b := testkit.Pipe()
	devConn := NewStreamConn(b, StreamMTU)
	defer devConn.Close()
	p, err := NewPump(PumpConfig{TUN: ct.TUN(), Conn: NewStreamConn(a, StreamMTU), MTU: StreamMTU, Probe: ProbeConfig{Disable: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// IPv4 is dropped; a 9000-byte UDP-ish packet gets Packet Too Big back
	// on the TUN; a SYN from the host is clamped to the MTU; the small one
	// passes.
	ct.Outbound <- append([]byte{0x45}, make([]byte, 39)...)
	big := appendIPv6Header(nil, 9000-ipv6HeaderLen, 17, hostAddr, devAddr)
	big = append(big, make([]byte, 9000-ipv6HeaderLen)...)
	ct.Outbound <- big
	ptb := <-ct.Inbound
	if ptb[6] != protoICMPv6 || ptb[ipv6HeaderLen] != icmpv6PacketTooBig || !upperChecksumValid(ptb, protoICMPv6) {
		t.Fatalf("TUN got %x, want Packet Too Big", ptb[:48])
	}
	syn := makeTCP(hostAddr, devAddr, tcpFlagSYN, mssOpt(65000), nil)
	ct.Outbound <- syn
	bufs, sizes := makeBufs(4, StreamMTU)
	n, err := devConn.ReadPackets(bufs, sizes, 0)
	if err != nil || n != 1 {
		t.Fatalf("device got %d packets, %v", n, err)
	}
	if got := packetMSS(bufs[0][:sizes[0]]); got != StreamMTU-tcpOverhead {
		t.Fatalf("host SYN MSS %d, want %d", got, StreamMTU-tcpOverhead)
	}
	// A SYN-ACK from the device is clamped to our send limit.
	synack := makeTCP(devAddr, hostAddr, tcpFlagSYN|0x10, mssOpt(15940), nil)
	devConn.WritePacket(synack)
	got := <-ct.Inbound
	if mss := packetMSS(got); mss != DefaultMaxSendPacket-tcpOverhead {
		t.Fatalf("device SYN-ACK MSS %d, want %d", mss, DefaultMaxSendPacket-tcpOverhead)
	}
	st := p.Stats()
	if st.NotIPv6 != 1 || st.TooBig != 1 || st.Clamped != 2 {
		t.Fatalf("stats %+v", st)
	}
}
