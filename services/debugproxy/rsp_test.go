package debugproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

func TestEncodeDecode(t *testing.T) {
	cases := []struct{ payload, wire string }{
		{"", "$#00"},
		{"OK", "$OK#9a"},
		{"QStartNoAckMode", "$QStartNoAckMode#b0"},
		{"vAttach;4d2", "$vAttach;4d2#d0"},
		{"a#b$c}d*e", "$a}\x03b}\x04c}]d}\ne#"},
	}
	for _, c := range cases {
		got := Encode(nil, []byte(c.payload))
		if c.payload == "a#b$c}d*e" {
			// checksum over the escaped bytes
			var sum byte
			for _, b := range got[1 : len(got)-3] {
				sum += b
			}
			if got[len(got)-2] != hexDigit[sum>>4] || got[len(got)-1] != hexDigit[sum&15] {
				t.Errorf("escaped checksum wrong: %q", got)
			}
			if !strings.HasPrefix(string(got), c.wire) {
				t.Errorf("Encode(%q) = %q", c.payload, got)
			}
		} else if string(got) != c.wire {
			t.Errorf("Encode(%q) = %q, want %q", c.payload, got, c.wire)
		}
		dec, err := Decode(got[1 : len(got)-3])
		if err != nil || string(dec) != c.payload {
			t.Errorf("Decode(Encode(%q)) = %q, %v", c.payload, dec, err)
		}
	}
	// Run-length: "0* " is '0' and 32-29 = 3 more.
	if got, err := Decode([]byte("0* 1")); err != nil || string(got) != "00001" {
		t.Errorf("run-length: %q %v", got, err)
	}
	for _, bad := range []string{"}", "*a", "a*", "a*\x01"} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func pipe(t *testing.T) (*Conn, net.Conn) {
	a, b := testkit.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	c := NewConn(a)
	c.Timeout = 5 * time.Second
	return c, b
}

func readAll(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAckMode: a good packet is acknowledged '+', a bad checksum refused
// '-' and skipped; a '-' from the peer resends; after NoAck none of this.
func TestAckMode(t *testing.T) {
	c, peer := pipe(t)
	go peer.Write([]byte("+$qC#00$qC#b4"))
	p, err := c.Read()
	if err != nil || string(p.Data) != "qC" {
		t.Fatalf("read %q %v", p.Data, err)
	}
	if got := readAll(t, peer, 2); got != "-+" {
		t.Errorf("acks %q, want -+", got)
	}
	if err := c.Write([]byte("OK")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, peer, 6); got != "$OK#9a" {
		t.Errorf("wrote %q", got)
	}
	go peer.Write([]byte("-\x03"))
	p, err = c.Read()
	if err != nil || !p.Interrupt {
		t.Fatalf("interrupt: %+v %v", p, err)
	}
	if got := readAll(t, peer, 6); got != "$OK#9a" {
		t.Errorf("resend %q", got)
	}
	c.NoAck()
	go peer.Write([]byte("$bad#00$?#3f"))
	p, err = c.Read()
	if err != nil || string(p.Data) != "?" {
		t.Fatalf("no-ack read %q %v", p.Data, err)
	}
	c.Write([]byte("W00"))
	if got := readAll(t, peer, 7); got != "$W00#b7" {
		t.Errorf("no-ack mode wrote %q (acks?)", got)
	}
}

func TestResendBound(t *testing.T) {
	c, peer := pipe(t)
	go func() {
		io.Copy(io.Discard, peer)
	}()
	c.Write([]byte("OK"))
	go peer.Write(bytes.Repeat([]byte("-"), maxResends+1))
	if _, err := c.Read(); err == nil || !strings.Contains(err.Error(), "refused the same packet") {
		t.Errorf("endless nacks: %v", err)
	}
}

func TestPacketBounds(t *testing.T) {
	c, peer := pipe(t)
	go func() {
		peer.Write([]byte("$"))
		peer.Write(bytes.Repeat([]byte("a"), MaxPacket+1))
	}()
	if _, err := c.Read(); !errors.Is(err, ErrPacketTooLong) {
		t.Errorf("long packet: %v", err)
	}
	c2, peer2 := pipe(t)
	go peer2.Write([]byte("$a*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff*\xff#00"))
	// wrong checksum first: skipped; the peer then hangs up
	peer2.Close()
	if _, err := c2.Read(); err == nil {
		t.Error("read after a refused packet and EOF succeeded")
	}
	c3, peer3 := pipe(t)
	go peer3.Write([]byte("$abc"))
	go func() { time.Sleep(20 * time.Millisecond); peer3.Close() }()
	if _, err := c3.Read(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut packet: %v", err)
	}
}
