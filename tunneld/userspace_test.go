package tunneld

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/iosmux/iosmux/utun"
)

func preamble(a netip.Addr, port uint32) []byte {
	b := make([]byte, preambleLen)
	a16 := a.As16()
	copy(b, a16[:])
	binary.LittleEndian.PutUint32(b[16:], port)
	return b
}

func TestParsePreamble(t *testing.T) {
	dev := netip.MustParseAddr("fd00:1::1")
	tests := []struct {
		name string
		in   []byte
		want netip.AddrPort
		ok   bool
	}{
		{"rsd port", preamble(dev, 58783), netip.AddrPortFrom(dev, 58783), true},
		{"port 0", preamble(dev, 0), netip.AddrPort{}, false},
		{"port above 65535", preamble(dev, 65536), netip.AddrPort{}, false},
		{"short", preamble(dev, 1)[:19], netip.AddrPort{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePreamble(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parsePreamble = %v, %v; want %v, ok %v", got, err, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParsePreamble(f *testing.F) {
	f.Add(preamble(netip.MustParseAddr("fd00::1"), 58783))
	f.Add(make([]byte, 20))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := parsePreamble(b)
		if err != nil {
			return
		}
		if len(b) != preambleLen || ap.Port() == 0 || !ap.Addr().Is6() {
			t.Fatalf("accepted %x as %v", b, ap)
		}
		if got := preamble(ap.Addr(), uint32(ap.Port())); string(got) != string(b) {
			t.Fatalf("round trip %x → %v → %x", b, ap, got)
		}
	})
}

// TestUserspaceProxy relays a connection through a netstack pair to an
// echo listener, and drops clients that send a bad preamble or none.
func TestUserspaceProxy(t *testing.T) {
	host, err := utun.NewNetstack(utun.NetstackConfig{Address: netip.MustParsePrefix("fd00:1::2/64"), MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := utun.NewNetstack(utun.NetstackConfig{Address: netip.MustParsePrefix("fd00:1::1/64"), MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	stop := bridge(t, host, dev)
	defer stop()
	ln, err := dev.ListenTCP(netip.MustParseAddrPort("[fd00:1::1]:7"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := newUserspaceProxy(host, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addr := net.JoinHostPort("127.0.0.1", itoa(int(p.Port())))

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(preamble(netip.MustParseAddr("fd00:1::1"), 7))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the proxy = %q, %v", buf, err)
	}
	c.Close()

	bad, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	bad.SetDeadline(time.Now().Add(10 * time.Second))
	bad.Write(preamble(netip.MustParseAddr("fd00:1::1"), 0))
	if n, err := bad.Read(buf); err == nil {
		t.Errorf("bad preamble: read %d bytes, want the connection closed", n)
	}
	bad.Close()
	p.Close()
	p.Close()
}

// bridge moves packets between two netstacks, as a tunnel would.
func bridge(t *testing.T, a, b *utun.Netstack) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	move := func(from, to *utun.Netstack) {
		defer func() { done <- struct{}{} }()
		bufs := [][]byte{make([]byte, 2048)}
		sizes := []int{0}
		for ctx.Err() == nil {
			n, err := from.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			if n == 1 {
				to.Write([][]byte{bufs[0][:sizes[0]]}, 0)
			}
		}
	}
	go move(a, b)
	go move(b, a)
	return func() {
		cancel()
		a.Close()
		b.Close()
		<-done
		<-done
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
