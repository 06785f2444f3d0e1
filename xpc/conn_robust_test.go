package xpc

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"
)

func wantConnError(t *testing.T, err error, parts ...string) {
	t.Helper()
	var ce *ConnError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v (%T), want *ConnError", err, err)
	}
	for _, s := range parts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestServerBadInput(t *testing.T) {
	preface := "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a"
	tests := []struct {
		name   string
		script func(p *peer)
		parts  []string
		goaway bool
	}{
		{"garbage preface", func(p *peer) { p.raw("474554202f20485454502f312e310d0a0d0a0000000000000000") }, []string{"bad client preface", "scripted"}, false},
		{"even stream headers", func(p *peer) { p.raw(preface); p.headers(2) }, []string{"HEADERS frame on stream 2", "invalid stream_id"}, true},
		{"data before headers", func(p *peer) { p.raw(preface); p.data(1, hdrMsg) }, []string{"DATA frame on stream 1"}, true},
		{"bad xpc magic", func(p *peer) {
			p.raw(preface)
			p.headers(1)
			p.fr.WriteData(1, false, bytes.Repeat([]byte{0xee}, 24))
		}, []string{"message on stream 1", "bad wrapper magic"}, true},
		{"oversized body", func(p *peer) {
			p.raw(preface)
			p.headers(1)
			p.raw("000018000000000001" + "920bb02901010000" + "ffffffffffffff00" + "0000000000000000")
		}, []string{"too large"}, true},
		{"bad payload", func(p *peer) {
			p.raw(preface)
			p.headers(1)
			p.data(1, hdrMsg)
			p.raw("00001c000000000001" + "920bb02901010000" + "0400000000000000" + "0000000000000000" + "ffffffff")
		}, []string{"message on stream 1", "body length 4"}, true},
		{"goaway from peer", func(p *peer) { p.raw(preface); p.fr.WriteGoAway(0, http2.ErrCodeInternal, []byte("bye")) }, []string{"GOAWAY", "bye"}, false},
		{"eof", func(p *peer) { p.raw(preface); p.nc.Close() }, []string{"scripted"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := bufPipe(1 << 20)
			p := newPeer(t, a)
			srv := make(chan error, 1)
			go func() { _, err := Server(testCtx(t), b, &Config{Name: "scripted"}); srv <- err }()
			tt.script(p)
			err := <-srv
			wantConnError(t, err, tt.parts...)
			if tt.goaway {
				for {
					f := p.read()
					if f.typ == http2.FrameGoAway {
						break
					}
				}
			}
		})
	}
}

// TestStallMidFrame: a peer that stops inside a frame is reported, naming the
// frame, once FrameTimeout passes.
func TestStallMidFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := bufPipe(1 << 20)
		p := newPeer(t, a)
		srv := make(chan error, 1)
		go func() {
			_, err := Server(context.Background(), b, &Config{Name: "stall", FrameTimeout: 5 * time.Second})
			srv <- err
		}()
		p.raw("505249202a20485454502f322e300d0a0d0a534d0d0a0d0a")
		p.headers(1)
		p.raw("00002c000000000001" + "920bb029010000001400") // 10 of 44 payload bytes
		err := <-srv
		wantConnError(t, err, "DATA frame on stream 1 (10 of 44 payload bytes)", "stalled")
		a.Close()
	})
}

// TestSetupDeadline: a silent peer makes Client fail when ctx ends, naming
// the step.
func TestSetupDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := bufPipe(1 << 20)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := Client(ctx, a, &Config{Name: "silent"})
		wantConnError(t, err, "silent", "HEADER mirror", "deadline")
		b.Close()
	})
}

// TestWriterThatNeverReads: a peer floods frames that each demand an answer
// and never reads. We must stop reading rather than queue answers without
// bound, so the peer's own writes block.
func TestWriterThatNeverReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := bufPipe(64 << 10)
		srv := make(chan *Conn, 1)
		go func() { s, _ := Server(context.Background(), b, nil); srv <- s }()
		p := newPeer(t, a)
		sent := 0
		const total = 200000 // 3.4 MB of PINGs, each wanting a 17-byte ACK
		flood := make(chan struct{})
		go func() {
			defer close(flood)
			a.Write(mustHex(t, "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a"))
			for ; sent < total; sent++ {
				if p.fr.WritePing(false, [8]byte{1}) != nil {
					return
				}
			}
		}()
		synctest.Wait()
		if sent >= total {
			t.Fatalf("server absorbed all %d PINGs without the peer reading", total)
		}
		a.Close()
		<-flood
		select {
		case s := <-srv:
			if s != nil {
				s.Close()
			}
		default:
		}
	})
}

func TestCloseIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := bufPipe(1 << 20)
		c, s := pair(t, a, b, nil, nil)
		errs := make(chan error, 3)
		go func() { _, _, err := c.Receive(context.Background()); errs <- err }()
		go func() { _, err := c.Request(context.Background(), NewDict()); errs <- err }()
		synctest.Wait()
		for range 3 {
			go c.Close()
		}
		c.Close()
		for range 2 {
			if err := <-errs; !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked call returned %v, want net.ErrClosed", err)
			}
		}
		if err := c.Send(context.Background(), RootChannel, pingMsg); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Send after Close: %v", err)
		}
		<-s.Done()
		if s.Err() == nil {
			t.Error("server did not notice the close")
		}
		s.Close()
	})
}

// TestUnreadMessagesPauseReading: when nobody calls Receive, the server stops
// reading once MaxQueued bytes wait, so a flooding peer blocks instead of
// growing our memory; Receive resumes it.
func TestUnreadMessagesPauseReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := bufPipe(64 << 10)
		p := newPeer(t, a)
		srv := make(chan *Conn, 1)
		go func() { s, _ := Server(context.Background(), b, &Config{MaxQueued: 32 << 10}); srv <- s }()
		go func() {
			for {
				if _, err := p.fr.ReadFrame(); err != nil {
					return
				}
			}
		}()
		scriptedClientSetup(t, p)
		s := <-srv
		msg := &Message{Flags: FlagsMsg, Body: NewDict("x", Data(make([]byte, 1000)))}
		const total = 5000 // about 5 MB
		sent := 0
		flood := make(chan struct{})
		go func() {
			defer close(flood)
			b, _ := msg.AppendBinary(nil)
			for ; sent < total; sent++ {
				if p.fr.WriteData(1, false, b) != nil {
					return
				}
			}
		}()
		synctest.Wait()
		if sent >= total {
			t.Fatalf("server read all %d messages with nobody receiving", total)
		}
		stuck := sent
		for range 100 {
			if _, _, err := s.Receive(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if sent <= stuck {
			t.Errorf("Receive did not resume reading: %d then %d", stuck, sent)
		}
		s.Close()
		a.Close()
		<-flood
	})
}

// TestReassembly: messages split across DATA frames (down to one byte) and
// several messages in one frame are cut correctly (xpc.md §1.8).
func TestReassembly(t *testing.T) {
	a, b := bufPipe(1 << 20)
	p := newPeer(t, a)
	srv := make(chan *Conn, 1)
	go func() { s, _ := Server(testCtx(t), b, nil); srv <- s }()
	go func() {
		for {
			if _, err := p.fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	p.raw("505249202a20485454502f322e300d0a0d0a534d0d0a0d0a" + "00000c040000000000000300000064000400100000")
	p.headers(1)
	// HEADER and PING set-up messages in one frame.
	hdr, _ := hdrMsg.AppendBinary(nil)
	ping, _ := pingMsg.AppendBinary(nil)
	p.fr.WriteData(1, false, append(hdr, ping...))
	p.headers(3)
	p.data(3, initMsg)
	s := <-srv
	if s == nil {
		t.Fatal("server set-up failed")
	}
	defer s.Close()
	m1, _ := (&Message{Flags: FlagsMsg, ID: 7, Body: NewDict("a", String("one byte at a time"))}).AppendBinary(nil)
	m2, _ := (&Message{Flags: FlagsMsg, ID: 8, Body: NewDict("b", Int64(2))}).AppendBinary(nil)
	m3, _ := (&Message{Flags: FlagsMsg, ID: 9, Body: NewDict("c", Int64(3))}).AppendBinary(nil)
	for i := range m1 {
		p.fr.WriteData(1, false, m1[i:i+1])
	}
	both := append(append([]byte{}, m2...), m3[:10]...)
	p.fr.WriteData(1, false, both)
	p.fr.WriteData(1, false, m3[10:])
	for _, want := range []uint64{7, 8, 9} {
		m, _, err := s.Receive(testCtx(t))
		if err != nil || m.ID != want {
			t.Fatalf("got id %d %v, want %d", m.ID, err, want)
		}
	}
}
