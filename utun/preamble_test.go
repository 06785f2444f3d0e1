package utun

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

func preamble(a netip.Addr, port uint32) []byte {
	b := AppendPreamble(nil, netip.AddrPortFrom(a, 1))
	b[16], b[17], b[18], b[19] = byte(port), byte(port>>8), byte(port>>16), byte(port>>24)
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
			got, err := ParsePreamble(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("ParsePreamble = %v, %v; want %v, ok %v", got, err, tt.want, tt.ok)
			}
		})
	}
	// go-ios's layout: address bytes, then the port little endian.
	want := append(dev.AsSlice(), 0x9f, 0xe5, 0, 0)
	if got := AppendPreamble(nil, netip.AddrPortFrom(dev, 58783)); !bytes.Equal(got, want) {
		t.Errorf("AppendPreamble = %x, want %x", got, want)
	}
}

func FuzzParsePreamble(f *testing.F) {
	f.Add(preamble(netip.MustParseAddr("fd00::1"), 58783))
	f.Add(make([]byte, 20))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := ParsePreamble(b)
		if err != nil {
			return
		}
		if len(b) != PreambleLen || ap.Port() == 0 || !ap.Addr().Is6() {
			t.Fatalf("accepted %x as %v", b, ap)
		}
		if got := AppendPreamble(nil, ap); !bytes.Equal(got, b) {
			t.Fatalf("round trip %x → %v → %x", b, ap, got)
		}
	})
}

// TestPreambleForwarder reaches two device ports through one preamble
// port, and drops clients that send a bad preamble or none.
func TestPreambleForwarder(t *testing.T) {
	testkit.CheckLeaks(t)
	host, dev, stop := newPair(t)
	defer stop()
	for _, port := range []uint16{7, 62078} {
		ln, err := dev.ListenTCP(netip.AddrPortFrom(devAddr, port))
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
				go func() {
					c.Write([]byte{byte(port), byte(port >> 8)}) // says which port answered
					io.Copy(c, c)
					c.Close()
				}()
			}
		}()
	}
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fw := NewPreambleForwarder(local, host.DialContext, nil)
	defer fw.Close()
	for _, port := range []uint16{7, 62078, 7} {
		c, err := net.Dial("tcp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(AppendPreamble(nil, netip.AddrPortFrom(devAddr, port)))
		c.Write([]byte("ping"))
		buf := make([]byte, 6)
		if _, err := io.ReadFull(c, buf); err != nil || int(buf[0])|int(buf[1])<<8 != int(port) || string(buf[2:]) != "ping" {
			t.Fatalf("port %d through the preamble forwarder: %x, %v", port, buf, err)
		}
		c.Close()
	}
	// A host process dialling through the proxy.
	dial := PreambleDialer(fw.Addr().String())
	c, err := dial(context.Background(), "tcp", netip.AddrPortFrom(devAddr, 62078).String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("pong"))
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || int(buf[0])|int(buf[1])<<8 != 62078 || string(buf[2:]) != "pong" {
		t.Fatalf("PreambleDialer: %x, %v", buf, err)
	}
	c.Close()
	if _, err := dial(context.Background(), "tcp", "localhost:7"); err == nil {
		t.Error("PreambleDialer took a host name")
	}
	for name, pre := range map[string][]byte{
		"port 0": preamble(devAddr, 0),
		"short":  preamble(devAddr, 7)[:10],
	} {
		bad, err := net.Dial("tcp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		bad.SetDeadline(time.Now().Add(15 * time.Second))
		bad.Write(pre)
		if cw, ok := bad.(*net.TCPConn); ok {
			cw.CloseWrite() // a short preamble then EOF
		}
		if n, err := bad.Read(make([]byte, 8)); err == nil {
			t.Errorf("%s: read %d bytes, want the connection closed", name, n)
		}
		bad.Close()
	}
	fw.Close()
	fw.Close()
}
