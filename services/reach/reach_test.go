package reach

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
)

func TestKindOf(t *testing.T) {
	for _, tt := range []struct {
		name string
		want Kind
	}{
		{Mounter.RSD, Shim}, {AMFI.RSD, Shim}, {LockdownTrusted.RSD, Shim}, {LockdownUntrusted.RSD, Shim},
		{DebugProxy.RSD, Raw}, {OpenStdioSocket.RSD, Raw},
		{AppService.RSD, XPC}, {DeviceInfo.RSD, XPC}, {"com.example.other", XPC},
	} {
		if got := KindOf(tt.name); got != tt.want {
			t.Errorf("KindOf(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if ShimName(AMFI.Lockdown) != AMFI.RSD {
		t.Errorf("ShimName(%s) = %s", AMFI.Lockdown, ShimName(AMFI.Lockdown))
	}
}

// device serves an RSD on loopback listing a shim service and a raw one,
// each registered once as a Handler served with ServeRSD, and a listed
// service that refuses its checkin.
type device struct {
	wg      sync.WaitGroup
	rsdAddr netip.AddrPort
}

func startDevice(t *testing.T, ctx context.Context) *device {
	t.Helper()
	d := &device{}
	echo := func(ctx context.Context, c net.Conn) { io.Copy(c, c) }
	hello := func(ctx context.Context, c net.Conn) { c.Write([]byte("hello")) }
	var services []rsd.Service
	serve := func(s Names, h func(net.Conn)) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		context.AfterFunc(ctx, func() { ln.Close() })
		services = append(services, rsd.Service{Name: s.RSD, Port: uint16(ln.Addr().(*net.TCPAddr).Port), Entitlement: "x"})
		d.wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				d.wg.Go(func() { defer c.Close(); h(c) })
			}
		})
	}
	serve(AFC, func(c net.Conn) { ServeRSD(ctx, c, AFC, echo) })
	serve(DebugProxy, func(c net.Conn) { ServeRSD(ctx, c, DebugProxy, hello) })
	serve(Heartbeat, func(c net.Conn) { lockdown.RejectCheckin(ctx, c, Heartbeat.RSD, "ServiceProhibited", "no") })
	srv, err := rsd.NewServer(rsd.ServerConfig{Properties: rsd.ExampleProperties(), Services: services})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.rsdAddr = ln.Addr().(*net.TCPAddr).AddrPort()
	d.wg.Go(func() { srv.Serve(ctx, ln) })
	return d
}

func TestRSDOpener(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	d := startDevice(t, ctx)
	defer d.wg.Wait()
	defer cancel()
	o, err := NewRSD(ctx, nil, d.rsdAddr, RSDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if o.UDID() == "" {
		t.Error("no UDID from the Handshake")
	}
	// A shim: RSDCheckin done, then the service's bytes.
	c, err := o.Open(ctx, AFC)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Errorf("shim echo %q, %v", got, err)
	}
	c.Close()
	// A raw service: its bytes from the first one.
	c, err = o.Open(ctx, DebugProxy)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	if !bytes.Equal(b, []byte("hello")) {
		t.Errorf("raw service sent %q", b)
	}
	c.Close()
	// Not listed, refused at checkin, no RSD name, wrong kind.
	if _, err := o.Open(ctx, AppService); err == nil || !strings.Contains(err.Error(), "OpenXPC") {
		t.Errorf("RemoteXPC service through Open: %v", err)
	}
	_, err = o.Open(ctx, OpenStdioSocket)
	if !errors.Is(err, ErrNotListed) || !strings.Contains(err.Error(), "mounter auto-mount") {
		t.Errorf("unlisted DDI service: %v", err)
	}
	if _, err := o.Open(ctx, Heartbeat); !errors.Is(err, ErrNotListed) || !strings.Contains(err.Error(), "ServiceProhibited") {
		t.Errorf("refused checkin: %v", err)
	}
	if _, err := o.Open(ctx, Names{Lockdown: "com.apple.x"}); !errors.Is(err, ErrNotListed) {
		t.Errorf("no RSD name: %v", err)
	}
	if _, err := o.OpenXPC(ctx, AFC, nil); err == nil {
		t.Error("OpenXPC of a shim accepted")
	}
}

// TestServeRSDRefusesBadCheckin: a first plist that is not RSDCheckin
// ends the connection before the handler runs.
func TestServeRSDRefusesBadCheckin(t *testing.T) {
	a, b := net.Pipe()
	ran := false
	done := make(chan error, 1)
	go func() {
		done <- ServeRSD(context.Background(), b, Mounter, func(context.Context, net.Conn) { ran = true })
	}()
	pc := lockdown.NewPlistConn(a, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc.Send(ctx, map[string]any{"Request": "StartService"})
	if err := <-done; err == nil || ran {
		t.Errorf("ServeRSD = %v, handler ran %v", err, ran)
	}
	a.Close()
	if err := ServeRSD(context.Background(), b, AppService, nil); err == nil {
		t.Error("ServeRSD of a RemoteXPC service accepted")
	}
}
