package openstdio

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/xpc"
)

type opener struct {
	reg *Registry
	ctx context.Context
	wg  sync.WaitGroup
}

func (o *opener) UDID() string { return "U" }
func (o *opener) Open(ctx context.Context, s reach.Names) (net.Conn, error) {
	if s != reach.OpenStdioSocket {
		return nil, errors.New("wrong service")
	}
	a, b := testkit.Pipe()
	o.wg.Go(func() { o.reg.Serve(o.ctx, b) })
	return a, nil
}

func TestBothRoles(t *testing.T) {
	testkit.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := &opener{reg: &Registry{}, ctx: ctx}
	defer o.wg.Wait()

	s1, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if s1.ID == s2.ID || s1.ID.IsZero() || s1.ID[6]>>4 != 4 {
		t.Errorf("ids %v %v", s1.ID, s2.ID)
	}
	// Input sent before the launch reaches the process.
	s1.Write([]byte("early\n"))
	if _, ok := o.reg.Claim(xpc.UUID{1}); ok {
		t.Error("claimed an unknown id")
	}
	p, ok := o.reg.Claim(s1.ID)
	if !ok {
		t.Fatal("claim failed")
	}
	if _, ok := o.reg.Claim(s1.ID); ok {
		t.Error("claimed twice")
	}
	line, err := bufio.NewReader(p).ReadString('\n')
	if err != nil || line != "early\n" {
		t.Errorf("process read %q %v", line, err)
	}
	p.Write([]byte("hello from com.example.demo\n"))
	p.Close() // the process ends: the device closes the socket
	out, err := io.ReadAll(s1)
	if err != nil || string(out) != "hello from com.example.demo\n" {
		t.Errorf("host read %q %v", out, err)
	}
	s1.Close()

	// A host that hangs up before any launch is forgotten.
	s2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		o.reg.mu.Lock()
		n := len(o.reg.waiting)
		o.reg.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a hung-up socket stays registered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := o.reg.Claim(s2.ID); ok {
		t.Error("claimed a hung-up socket")
	}
}

func TestReadIDTimeout(t *testing.T) {
	a, b := testkit.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := ReadID(ctx, a); err == nil {
		t.Fatal("no error without a UUID")
	}
	b.Write([]byte{1, 2, 3})
	b.Close()
	if _, err := ReadID(context.Background(), a); err == nil {
		t.Fatal("short UUID accepted")
	}
}

// TestDeviceEndsSocket: the boot ending closes claimed and unclaimed
// sockets alike.
func TestDeviceEndsSocket(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	o := &opener{reg: &Registry{}, ctx: ctx}
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(context.Background(), o)
	o.reg.Claim(s.ID)
	cancel()
	o.wg.Wait()
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Error("claimed socket still open")
	}
	if _, err := s2.Read(make([]byte, 1)); err == nil {
		t.Error("unclaimed socket still open")
	}
}

// slowConn is a device's end that is descheduled right after each write.
type slowConn struct{ net.Conn }

func (c slowConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	time.Sleep(20 * time.Millisecond)
	return n, err
}

// TestClaimRightAfterID: a launch naming the UUID the moment the host has
// read it finds the socket, even when the device stalls right after
// sending it (the socket is registered before the UUID is sent).
func TestClaimRightAfterID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg := &Registry{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for range 5 {
		a, b := testkit.Pipe()
		wg.Go(func() { reg.Serve(ctx, slowConn{b}) })
		s, err := ReadID(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := reg.Claim(s.ID)
		if !ok {
			t.Fatal("the socket was not claimable right after its UUID was read")
		}
		p.Close()
		s.Close()
	}
}
