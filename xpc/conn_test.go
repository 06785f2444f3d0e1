package xpc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"

	"github.com/iosmux/iosmux/internal/testkit"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pair runs our client against our server over nc pair a, b.
func pair(t *testing.T, a, b net.Conn, ccfg, scfg *Config) (*Conn, *Conn) {
	t.Helper()
	ctx := testCtx(t)
	type res struct {
		c   *Conn
		err error
	}
	sch := make(chan res, 1)
	go func() {
		s, err := Server(ctx, b, scfg)
		sch <- res{s, err}
	}()
	c, err := Client(ctx, a, ccfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	r := <-sch
	if r.err != nil {
		t.Fatalf("server: %v", r.err)
	}
	t.Cleanup(func() { c.Close(); r.c.Close() })
	return c, r.c
}

func TestClientServerRequestReply(t *testing.T) {
	testkit.CheckLeaks(t)
	for _, tc := range []struct {
		name string
		mk   func() (net.Conn, net.Conn)
	}{
		{"net.Pipe", net.Pipe},
		{"bufPipe", func() (net.Conn, net.Conn) { return bufPipe(4096) }},
		{"loopback", func() (net.Conn, net.Conn) { return tcpPair(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tc.mk()
			c, s := pair(t, a, b, &Config{Name: "test-client"}, &Config{Name: "test-server"})
			ctx := testCtx(t)
			// Server sends an event on the root channel first (like an RSD
			// Handshake), then serves requests.
			go func() {
				_ = s.Send(ctx, RootChannel, &Message{Flags: FlagsMsg, ID: 2, Body: NewDict("MessageType", String("Handshake"))})
				for {
					req, ch, err := s.Receive(ctx)
					if err != nil {
						return
					}
					if ch != RootChannel || !req.Flags.Has(FlagWantsReply) {
						continue
					}
					_ = s.Reply(ctx, req, NewDict("echo", Int64(req.Body.Int64("n"))))
				}
			}()
			ev, ch, err := c.Receive(ctx)
			if err != nil || ch != RootChannel || ev.Body.String("MessageType") != "Handshake" || ev.ID != 2 {
				t.Fatalf("event: got %v %v %v", ev.Body, ch, err)
			}
			for i := range 5 {
				r, err := c.Request(ctx, NewDict("n", Int64(i)))
				if err != nil {
					t.Fatal(err)
				}
				if r.Body.Int64("echo") != int64(i) || r.Flags != FlagsReplyMsg || r.ID != uint64(i+1) {
					t.Errorf("reply %d: got %v id %d flags %v", i, r.Body, r.ID, r.Flags)
				}
			}
		})
	}
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return a, <-ch
}

// TestLargeMessages streams multi-MiB messages both ways: flow-control
// windows must be replenished and DATA split at 16384.
func TestLargeMessages(t *testing.T) {
	testkit.CheckLeaks(t)
	a, b := tcpPair(t)
	c, s := pair(t, a, b, nil, nil)
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16) // 3 MiB > the 1 MiB windows
	go func() {
		req, _, err := s.Receive(ctx)
		if err != nil {
			return
		}
		_ = s.Reply(ctx, req, NewDict("blob", Data(big), "len", Uint64(len(req.Body.Data("blob")))))
	}()
	r, err := c.Request(ctx, NewDict("blob", Data(big)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Body.Uint64("len") != uint64(len(big)) || !bytes.Equal(r.Body.Data("blob"), big) {
		t.Fatalf("large message corrupted: len %d", r.Body.Uint64("len"))
	}
}

// peer is a scripted HTTP/2 endpoint on one end of a pipe.
type peer struct {
	t  *testing.T
	nc net.Conn
	fr *http2.Framer
}

func newPeer(t *testing.T, nc net.Conn) *peer {
	fr := http2.NewFramer(nc, nc)
	fr.SetMaxReadFrameSize(1<<24 - 1)
	return &peer{t: t, nc: nc, fr: fr}
}

func (p *peer) raw(hexs string) {
	p.t.Helper()
	if _, err := p.nc.Write(mustHex(p.t, hexs)); err != nil {
		p.t.Fatalf("peer write: %v", err)
	}
}

func (p *peer) data(id uint32, m *Message) {
	p.t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.fr.WriteData(id, false, b); err != nil {
		p.t.Fatalf("peer write: %v", err)
	}
}

func (p *peer) headers(id uint32) {
	p.t.Helper()
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true}); err != nil {
		p.t.Fatal(err)
	}
}

// frame is a frame read by the peer, with DATA payload copied.
type frame struct {
	typ    http2.FrameType
	stream uint32
	flags  http2.Flags
	data   []byte
}

func (f frame) String() string {
	return fmt.Sprintf("%v stream %d flags %#x len %d", f.typ, f.stream, uint8(f.flags), len(f.data))
}

func (p *peer) read() frame {
	p.t.Helper()
	_ = p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := p.fr.ReadFrame()
	if err != nil {
		p.t.Fatalf("peer read: %v", err)
	}
	out := frame{typ: f.Header().Type, stream: f.Header().StreamID, flags: f.Header().Flags}
	switch f := f.(type) {
	case *http2.DataFrame:
		out.data = bytes.Clone(f.Data())
	case *http2.GoAwayFrame:
		out.data = bytes.Clone(f.DebugData())
	}
	return out
}

// want reads one frame and checks its type, stream and, for DATA, the XPC
// flags of the message it carries.
func (p *peer) want(typ http2.FrameType, stream uint32, xflags ...Flags) frame {
	p.t.Helper()
	f := p.read()
	if f.typ != typ || f.stream != stream {
		p.t.Fatalf("got %v, want %v on stream %d", f, typ, stream)
	}
	if len(xflags) > 0 {
		h, err := ParseHeader(f.data)
		if err != nil || h.Flags != xflags[0] {
			p.t.Fatalf("got DATA %x, want xpc flags %v", f.data, xflags[0])
		}
	}
	return f
}

// TestClientSetupBytes: our client writes the 204 bytes of vector
// h2_client_init_1MiB exactly (CoreDeviceService's frames, ACK last).
func TestClientSetupBytes(t *testing.T) {
	want := mustHex(t, readFile(t, "testdata/h2_client_init_1MiB.hex"))
	a, b := bufPipe(1 << 20)
	p := newPeer(t, b)
	// The server's SETTINGS arrive first, as from a device.
	p.raw("00000c040000000000000300000064000400100000" + "000004080000000000000f0001")
	done := make(chan error, 1)
	var c *Conn
	go func() {
		var err error
		c, err = Client(testCtx(t), a, nil)
		done <- err
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("client set-up:\n got %x\nwant %x", got, want)
	}
	p.headers(1)
	p.data(1, &Message{Flags: FlagsHeader, Body: NewDict()})
	p.headers(3)
	p.data(1, &Message{Flags: FlagsPingMsg})
	p.data(3, &Message{Flags: FlagsReplyOpen})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func readFile(t *testing.T, name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// clientStep is one action of a scripted client set-up.
type clientStep struct {
	headers uint32   // send HEADERS on this stream, or
	data    uint32   // send the set-up message for this stream/kind
	msg     *Message // the message for data
	ack     bool     // send a SETTINGS ACK
	expect  []expect // then read these frames from the server
}

type expect struct {
	typ    http2.FrameType
	stream uint32
	flags  Flags
}

var (
	hdrMsg  = &Message{Flags: FlagsHeader, Body: NewDict()}
	pingMsg = &Message{Flags: FlagsPingMsg}
	initMsg = &Message{Flags: FlagsReplyOpen}
)

// TestServerSetupOrders plays every client set-up order of xpc.md §1.6 and
// checks that the server answers each trigger, and only after it.
func TestServerSetupOrders(t *testing.T) {
	h1 := expect{http2.FrameHeaders, 1, 0}
	h3 := expect{http2.FrameHeaders, 3, 0}
	m1 := expect{http2.FrameData, 1, FlagsHeader}
	mp := expect{http2.FrameData, 1, FlagsPingMsg}
	m3 := expect{http2.FrameData, 3, FlagsReplyOpen}
	id1 := func(m *Message) *Message { c := *m; c.ID = 1; return &c }
	orders := map[string][]clientStep{
		"canonical": {{headers: 1, expect: []expect{h1}}, {data: 1, msg: hdrMsg, expect: []expect{m1}}, {headers: 3, expect: []expect{h3}},
			{data: 1, msg: pingMsg, expect: []expect{mp}}, {data: 3, msg: initMsg, expect: []expect{m3}}, {ack: true}},
		"cds ack third": {{headers: 1, expect: []expect{h1}}, {ack: true}, {data: 1, msg: hdrMsg, expect: []expect{m1}}, {headers: 3, expect: []expect{h3}},
			{data: 1, msg: pingMsg, expect: []expect{mp}}, {data: 3, msg: initMsg, expect: []expect{m3}}},
		"frida": {{headers: 1, expect: []expect{h1}}, {data: 1, msg: hdrMsg, expect: []expect{m1}}, {data: 1, msg: pingMsg, expect: []expect{mp}},
			{headers: 3, expect: []expect{h3}}, {data: 3, msg: initMsg, expect: []expect{m3}}},
		"idevice ids 1": {{headers: 1, expect: []expect{h1}}, {data: 1, msg: id1(hdrMsg), expect: []expect{m1}}, {headers: 3, expect: []expect{h3}},
			{data: 3, msg: id1(initMsg), expect: []expect{m3}}, {data: 1, msg: id1(pingMsg), expect: []expect{mp}}},
		"go-ios": {{ack: true}, {headers: 1, expect: []expect{h1}}, {data: 1, msg: hdrMsg, expect: []expect{m1}}, {headers: 3, expect: []expect{h3}},
			{data: 3, msg: initMsg, expect: []expect{m3}}, {data: 1, msg: pingMsg, expect: []expect{mp}}},
	}
	for name, steps := range orders {
		t.Run(name, func(t *testing.T) {
			a, b := bufPipe(1 << 20)
			p := newPeer(t, a)
			srv := make(chan error, 1)
			var s *Conn
			go func() {
				var err error
				s, err = Server(testCtx(t), b, &Config{Name: "scripted"})
				srv <- err
			}()
			// Before any client byte: SETTINGS first, then WINDOW_UPDATE.
			p.want(http2.FrameSettings, 0)
			p.want(http2.FrameWindowUpdate, 0)
			p.raw("505249202a20485454502f322e300d0a0d0a534d0d0a0d0a" + "00000c040000000000000300000064000400100000" + "000004080000000000000f0001")
			if f := p.want(http2.FrameSettings, 0); f.flags != http2.FlagSettingsAck {
				t.Fatalf("want SETTINGS ACK, got %v", f)
			}
			for _, st := range steps {
				switch {
				case st.ack:
					p.raw("000000040100000000")
				case st.headers != 0:
					p.headers(st.headers)
				default:
					p.data(st.data, st.msg)
				}
				for _, e := range st.expect {
					if e.flags != 0 {
						p.want(e.typ, e.stream, e.flags)
					} else {
						p.want(e.typ, e.stream)
					}
				}
			}
			if err := <-srv; err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Only now may the server send on the root channel.
			go s.Send(testCtx(t), RootChannel, &Message{Flags: FlagsMsg, ID: 2, Body: NewDict("MessageType", String("Handshake"))})
			f := p.want(http2.FrameData, 1, FlagsMsg)
			m, err := Decode(f.data)
			if err != nil || m.Body.String("MessageType") != "Handshake" {
				t.Fatalf("handshake: %v %v", m.Body, err)
			}
		})
	}
}

// TestServerPymobiledevice3Stream feeds the pmd3 byte stream (16 MiB window,
// then its own Handshake, vector 11) and expects the Handshake delivered.
func TestServerPymobiledevice3Stream(t *testing.T) {
	a, b := bufPipe(1 << 20)
	p := newPeer(t, a)
	srv := make(chan *Conn, 1)
	go func() {
		s, err := Server(testCtx(t), b, nil)
		if err != nil {
			t.Error(err)
		}
		srv <- s
	}()
	p.raw(readFile(t, "testdata/h2_client_init_pymobiledevice3_default.hex"))
	s := <-srv
	if s == nil {
		t.FailNow()
	}
	defer s.Close()
	m, ch, err := s.Receive(testCtx(t))
	if err != nil || ch != RootChannel || m.Body.String("MessageType") != "Handshake" || m.Body.Uint64("MessagingProtocolVersion") != 7 {
		t.Fatalf("got %v on %v: %v", m.Body, ch, err)
	}
}

// scriptedClientSetup drives a server through the canonical set-up.
func scriptedClientSetup(t *testing.T, p *peer) {
	p.raw("505249202a20485454502f322e300d0a0d0a534d0d0a0d0a" + "00000c040000000000000300000064000400100000" + "000004080000000000000f0001")
	p.headers(1)
	p.data(1, hdrMsg)
	p.headers(3)
	p.data(1, pingMsg)
	p.data(3, initMsg)
}

func TestServerSplitsDataFrames(t *testing.T) {
	a, b := bufPipe(1 << 20)
	p := newPeer(t, a)
	srv := make(chan *Conn, 1)
	go func() { s, _ := Server(testCtx(t), b, nil); srv <- s }()
	scriptedClientSetup(t, p)
	s := <-srv
	defer s.Close()
	body := NewDict("x", Data(make([]byte, 100000)))
	go s.Send(testCtx(t), RootChannel, &Message{Flags: FlagsMsg, ID: 2, Body: body})
	want, _ := (&Message{Flags: FlagsMsg, ID: 2, Body: body}).AppendBinary(nil)
	var got []byte
	for len(got) < len(want) {
		f := p.read()
		if f.typ == http2.FrameData && f.stream == 1 {
			if len(f.data) > 16384 {
				t.Fatalf("DATA frame of %d bytes", len(f.data))
			}
			if h, err := ParseHeader(f.data); err == nil && h.Flags != FlagsMsg {
				continue // a mirror
			}
			got = append(got, f.data...)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("reassembled message differs")
	}
}

// TestServerRespectsPeerWindow: with a 65535-byte window (go-ios never
// replenishes), the server stops and resumes only on WINDOW_UPDATE.
func TestServerRespectsPeerWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := bufPipe(1 << 20)
		p := newPeer(t, a)
		srv := make(chan *Conn, 1)
		go func() { s, _ := Server(context.Background(), b, nil); srv <- s }()
		// Default windows: no SETTINGS IWS from this client.
		p.raw("505249202a20485454502f322e300d0a0d0a534d0d0a0d0a" + "000000040000000000")
		p.headers(1)
		p.data(1, hdrMsg)
		p.headers(3)
		p.data(1, pingMsg)
		p.data(3, initMsg)
		s := <-srv
		sent := make(chan error, 1)
		go func() {
			sent <- s.Send(context.Background(), RootChannel, &Message{Flags: FlagsMsg, Body: NewDict("x", Data(make([]byte, 200000)))})
		}()
		synctest.Wait()
		var n int
		for {
			a.SetReadDeadline(time.Now().Add(time.Second))
			f, err := p.fr.ReadFrame()
			if err != nil {
				break
			}
			if df, ok := f.(*http2.DataFrame); ok && df.StreamID == 1 {
				n += len(df.Data())
			}
		}
		// The connection window (65535) bounds stream 1's bytes, less the
		// 24-byte INIT mirror already sent on stream 3.
		if n != 65535-24 {
			t.Fatalf("sent %d bytes on stream 1, want 65511 (the connection window)", n)
		}
		select {
		case err := <-sent:
			t.Fatalf("Send returned %v before the window opened", err)
		default:
		}
		a.SetReadDeadline(time.Time{})
		p.fr.WriteWindowUpdate(0, 1<<20)
		p.fr.WriteWindowUpdate(1, 1<<20)
		go func() {
			for {
				if _, err := p.fr.ReadFrame(); err != nil {
					return
				}
			}
		}()
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		s.Close()
		a.Close()
	})
}

// TestServerHeaderReply: the stream-1 mirror of the client's HEADER carries
// Config.HeaderReply (the tunnel service's {"ServiceVersion": 2}).
func TestServerHeaderReply(t *testing.T) {
	a, b := bufPipe(1 << 20)
	p := newPeer(t, a)
	srv := make(chan *Conn, 1)
	go func() {
		s, err := Server(testCtx(t), b, &Config{HeaderReply: NewDict("ServiceVersion", Int64(2))})
		if err != nil {
			t.Error(err)
		}
		srv <- s
	}()
	scriptedClientSetup(t, p)
	for {
		f := p.read()
		if f.typ != http2.FrameData || f.stream != 1 {
			continue
		}
		m, err := Decode(f.data)
		if err != nil {
			t.Fatalf("decode mirror: %v", err)
		}
		if m.Flags != FlagsHeader {
			t.Fatalf("got first stream-1 message flags %v, want %v", m.Flags, FlagsHeader)
		}
		if got := m.Body.Int64("ServiceVersion"); got != 2 {
			t.Fatalf("got ServiceVersion %d in %v, want 2", got, m.Body)
		}
		break
	}
	if s := <-srv; s != nil {
		s.Close()
	}
}

// A message the peer received is reported sent even when the peer hangs up
// right after reading it, and a reply that arrived before the end is still
// the answer: both used to lose a coin toss against the connection's end.
func TestLastMessageBeforeHangUp(t *testing.T) {
	testkit.CheckLeaks(t)
	for i := range 40 {
		a, b := tcpPair(t)
		c, s := pair(t, a, b, &Config{Name: "client"}, &Config{Name: "server"})
		ctx := testCtx(t)
		sent := make(chan error, 1)
		go func() {
			sent <- s.Send(ctx, RootChannel, &Message{Flags: FlagsMsg, Body: NewDict("last", Bool(true))})
		}()
		if _, _, err := c.Receive(ctx); err != nil {
			t.Fatalf("round %d: receive: %v", i, err)
		}
		c.Close()
		if err := <-sent; err != nil {
			t.Fatalf("round %d: the peer read the message, yet Send says %v", i, err)
		}
		s.Close()

		a, b = tcpPair(t)
		c, s = pair(t, a, b, &Config{Name: "client"}, &Config{Name: "server"})
		go func() {
			req, _, err := s.Receive(ctx)
			if err == nil {
				_ = s.Reply(ctx, req, NewDict("ok", Bool(true)))
			}
			s.Close()
		}()
		if r, err := c.Request(ctx, NewDict("q", Bool(true))); err != nil || !r.Body.Bool("ok") {
			t.Fatalf("round %d: reply before hang-up: %v, %v", i, r.Body, err)
		}
		c.Close()
	}
}
