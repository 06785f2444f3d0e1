package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/utun"
)

// lineBuffer is stdout shared with the command's goroutine; line closes
// once a complete line has been written.
type lineBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	line chan struct{}
	once sync.Once
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if bytes.Contains(b.buf.Bytes(), []byte("\n")) {
		b.once.Do(func() { close(b.line) })
	}
	return n, err
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestStartTunnelUserspace pairs with a simulated iPhone over its RSD, then
// runs start-tunnel in userspace mode over RSD and over the network pairing
// port: the printed address reaches the device's trusted RSD through the
// tunnel, and an interrupt ends the command cleanly.
func TestStartTunnelUserspace(t *testing.T) {
	fleet, err := sim.StartFleet(sim.FleetConfig{Count: 1, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	ep := fleet.Endpoints().Devices[0]
	records := t.TempDir()
	state := t.TempDir()
	host, port, _ := net.SplitHostPort(ep.UntrustedRSD)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := execIn(ctx, io.Discard, io.Discard, nil, "pair", "--rsd", host, port, "--pair-records", records, "--state-dir", state); err != nil {
		t.Fatalf("pair: %v", err)
	}
	rpHost, rpPort, _ := net.SplitHostPort(ep.NetworkPairing)
	for _, args := range [][]string{
		{"--rsd", host, port},
		{"--remotepairing", rpHost, rpPort, "--udid", ep.UDID},
	} {
		t.Run(args[0]+"/json", func(t *testing.T) {
			// --json adds the userspace proxy, through which every device
			// port is reached with go-ios's preamble.
			out := &lockedBuffer{ready: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- execIn(ctx, out, io.Discard, nil, append(append([]string{"start-tunnel"}, args...), "--userspace", "--json", "--pair-records", records, "--state-dir", state)...)
			}()
			select {
			case <-out.ready: // the whole JSON document
			case err := <-done:
				t.Fatalf("start-tunnel exited: %v", err)
			case <-time.After(time.Minute):
				t.Fatal("no JSON output")
			}
			var shown tunnelOutput
			out.mu.Lock()
			err := json.Unmarshal(out.buf.Bytes(), &shown)
			out.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if !shown.Userspace || shown.ProxyPort == 0 {
				t.Fatalf("userspace tunnel without its proxy: %+v", shown)
			}
			dev := netip.AddrPortFrom(netip.MustParseAddr(shown.DeviceAddress), uint16(shown.DevicePort))
			proxyDial := func(dst netip.AddrPort) net.Conn {
				t.Helper()
				nc, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(shown.ProxyPort)))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := nc.Write(utun.AppendPreamble(nil, dst)); err != nil {
					t.Fatal(err)
				}
				return nc
			}
			hctx, hcancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer hcancel()
			c, err := rsd.NewClient(hctx, proxyDial(dev), nil)
			if err != nil {
				t.Fatalf("trusted RSD through the userspace proxy: %v", err)
			}
			defer c.Close()
			if got := c.Handshake.Device().UDID; got != ep.UDID {
				t.Errorf("trusted RSD is device %q, want %q", got, ep.UDID)
			}
			// Another service of the device, by the port the RSD lists.
			svc, ok := c.Handshake.Service("com.apple.mobile.lockdown.remote.trusted")
			if !ok {
				t.Fatal("no trusted lockdown in the RSD")
			}
			sc, err := lockdown.ShimClient(hctx, proxyDial(netip.AddrPortFrom(dev.Addr(), svc.Port)), svc.Name, "iosmux-test", nil)
			if err != nil {
				t.Fatalf("lockdown (RSDCheckin) through the userspace proxy: %v", err)
			}
			sc.Close()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("start-tunnel after interrupt: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("start-tunnel did not stop after the interrupt")
			}
		})
		t.Run(args[0], func(t *testing.T) {
			out := &lineBuffer{line: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- execIn(ctx, out, io.Discard, nil, append(append([]string{"start-tunnel"}, args...), "--userspace", "--script-mode", "--pair-records", records, "--state-dir", state)...)
			}()
			select {
			case <-out.line:
			case err := <-done:
				t.Fatalf("start-tunnel exited: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("no output")
			}
			fields := strings.Fields(out.String())
			if len(fields) != 2 || fields[0] != "127.0.0.1" {
				t.Fatalf("script-mode output %q, want '127.0.0.1 PORT'", out.String())
			}
			// The forwarded RSD is the device's trusted one, inside the tunnel.
			nc, err := net.Dial("tcp", net.JoinHostPort(fields[0], fields[1]))
			if err != nil {
				t.Fatal(err)
			}
			hctx, hcancel := context.WithTimeout(context.Background(), 20*time.Second)
			c, err := rsd.NewClient(hctx, nc, nil)
			hcancel()
			if err != nil {
				t.Fatalf("trusted RSD through the tunnel: %v", err)
			}
			if got := c.Handshake.Device().UDID; got != ep.UDID {
				t.Errorf("trusted RSD is device %q, want %q", got, ep.UDID)
			}
			c.Close()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("start-tunnel after interrupt: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("start-tunnel did not stop after the interrupt")
			}
		})
	}
}

func TestStartTunnelOutput(t *testing.T) {
	o := tunnelOutput{Identifier: "00008110-001A2B3C0E01401E", Interface: "tun3", Protocol: "tcp", Address: "fd7b:e5b:6f53::1", Port: 64337}
	var b bytes.Buffer
	writePlain(&b, o, "")
	want := "Identifier: 00008110-001A2B3C0E01401E\nInterface: tun3\nProtocol: TunnelProtocol.TCP\nRSD Address: fd7b:e5b:6f53::1\nRSD Port: 64337\nUse the follow connection option:\n--rsd fd7b:e5b:6f53::1 64337\n"
	if b.String() != want {
		t.Errorf("plain output\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	writeColored(&b, o, "")
	wantColored := "\x1b[33m\x1b[1mIdentifier: \x1b[0m\x1b[37m\x1b[1m00008110-001A2B3C0E01401E\x1b[0m\n"
	if !strings.HasPrefix(b.String(), wantColored) || !strings.Contains(b.String(), "\x1b[33m\x1b[1mProtocol: \x1b[0m\x1b[37m\x1b[1mtcp\x1b[0m\n") ||
		!strings.HasSuffix(b.String(), "\x1b[33m\x1b[1mUse the follow connection option:\n\x1b[0m\x1b[36m\x1b[1m--rsd fd7b:e5b:6f53::1 64337\x1b[0m\n") {
		t.Errorf("colored output %q", b.String())
	}
	// Userspace mode appends its proxy after pymobiledevice3's lines.
	b.Reset()
	u := o
	u.ProxyPort = 50123
	writePlain(&b, u, "")
	if b.String() != want+"Userspace proxy (go-ios protocol, every device port): 127.0.0.1:50123\n" {
		t.Errorf("userspace plain output %q", b.String())
	}
	b.Reset()
	a := testApp(&b, nil)
	printTunnel(a, o, true, false, "")
	if b.String() != "fd7b:e5b:6f53::1 64337\n" {
		t.Errorf("script mode %q", b.String())
	}
}

func TestStartTunnelBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"start-tunnel", "--protocol", "udp"},
		{"start-tunnel", "--connection", "bluetooth"},
		{"start-tunnel", "--connection", "usbmux", "--protocol", "quic"},
		{"start-tunnel", "--rsd", "::1", "58783", "--remotepairing", "::1", "1"},
		{"start-tunnel", "--rsd", "::1"},
		{"start-tunnel", "--script-mode", "--json"},
	} {
		var errb bytes.Buffer
		if code := run(args, io.Discard, &errb, func(string) string { return "" }); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}
