package debugproxy

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// seeds are what lldb sends (device role) and what debugserver answers
// (host role), as they appear on the wire.
var seeds = []string{
	"+$QStartNoAckMode#b0",
	"$qSupported:xmlRegisters=i386,arm,mips,arc;multiprocess+;fork-events+;vfork-events+#2e",
	"$qHostInfo#9b$qProcessInfo#dc$vAttach;4d2#d0$?#3f$c#63\x03$k#6b",
	"$vCont;c#a8$Hg4d2#79$qfThreadInfo#bb",
	"+$OK#9a",
	"$PacketSize=20000;QStartNoAckMode+#38",
	"$T11thread:4d2;#6d$W00#b7$X09#c1",
	"$0* 1#00-$E01#a6",
	"$a}\x03b}]c#00",
}

// FuzzDeviceRead feeds arbitrary bytes to the simulated debugserver as if
// from a debugger: it must answer or hang up, never panic or hang.
func FuzzDeviceRead(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, d := testkit.Pipe()
		tg := newTarget()
		close(tg.end) // a continued process ends at once
		done := make(chan struct{})
		go func() { (&Server{Target: tg}).Serve(context.Background(), d); close(done) }()
		go io.Copy(io.Discard, a)
		a.Write(b)
		a.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("server did not end after input %q", b)
		}
	})
}

// FuzzHostRead reads arbitrary bytes as a debugger reads replies: every
// packet decodes within the bound, and a packet read re-encodes to one
// that reads back the same.
func FuzzHostRead(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, d := testkit.Pipe()
		defer a.Close()
		go func() { d.Write(b); d.Close() }()
		go func() {
			// swallow our acks
			io.Copy(io.Discard, d)
		}()
		c := NewConn(a)
		c.Timeout = 5 * time.Second
		for {
			p, err := c.Read()
			if err != nil {
				return
			}
			if len(p.Data) > MaxPacket {
				t.Fatalf("packet of %d bytes", len(p.Data))
			}
			if p.Interrupt {
				continue
			}
			enc := Encode(nil, p.Data)
			dec, err := Decode(enc[1 : len(enc)-3])
			if err != nil || string(dec) != string(p.Data) {
				t.Fatalf("round trip of %q: %q %v", p.Data, dec, err)
			}
		}
	})
}
