package debugproxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/reach"
)

// fakeTarget is a one-process table: pid 1234 runs until ended.
type fakeTarget struct {
	mu       sync.Mutex
	attached bool
	stopped  bool
	gone     bool
	end      chan struct{}
	detached int
	killed   int
}

func newTarget() *fakeTarget { return &fakeTarget{end: make(chan struct{})} }

func (f *fakeTarget) Lookup(pid int64) (ProcessInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ProcessInfo{PID: pid, ParentPID: 1, Name: "Demo", UID: 501, GID: 501}, pid == 1234 && !f.gone
}

func (f *fakeTarget) Attach(pid int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attached {
		return errors.New("already traced")
	}
	f.attached, f.stopped = true, true
	return nil
}

func (f *fakeTarget) Resume(ctx context.Context, pid int64) (Stop, error) {
	f.mu.Lock()
	f.stopped = false
	f.mu.Unlock()
	select {
	case <-f.end:
		f.mu.Lock()
		f.gone = true
		f.mu.Unlock()
		return Stop{Exited: true, Signal: 15}, nil
	case <-ctx.Done():
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		return Stop{Signal: sigStop}, ctx.Err()
	}
}

func (f *fakeTarget) Detach(pid int64) {
	f.mu.Lock()
	f.detached++
	f.attached, f.stopped = false, false
	f.mu.Unlock()
}

func (f *fakeTarget) Kill(pid int64) {
	f.mu.Lock()
	f.killed++
	f.gone = true
	f.mu.Unlock()
}

func serve(t *testing.T, tg Target) (*Conn, chan struct{}) {
	a, b := testkit.Pipe()
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { (&Server{Target: tg}).Serve(ctx, b); close(done) }()
	t.Cleanup(func() { a.Close(); cancel(); <-done })
	c := NewConn(a)
	c.Timeout = 5 * time.Second
	return c, done
}

func call(t *testing.T, c *Conn, pkt, want string) {
	t.Helper()
	got, err := c.Call(pkt)
	if err != nil {
		t.Fatalf("%s: %v", pkt, err)
	}
	if got != want {
		t.Errorf("%s → %q, want %q", pkt, got, want)
	}
}

// TestServerSubset: the exchange of debugproxy.md §3 — the answers lldb
// needs to connect, attach, continue, see the exit.
func TestServerSubset(t *testing.T) {
	testkit.CheckLeaks(t)
	tg := newTarget()
	c, _ := serve(t, tg)
	call(t, c, "qSupported:xmlRegisters=i386,arm,mips,arc;multiprocess+", "PacketSize=20000;QStartNoAckMode+")
	call(t, c, "QStartNoAckMode", "OK")
	c.NoAck()
	call(t, c, "qHostInfo", "cputype:16777228;cpusubtype:2;ostype:ios;vendor:apple;endian:little;ptrsize:8;")
	call(t, c, "qProcessInfo", "E01")
	call(t, c, "qfThreadInfo", "E01")
	call(t, c, "qC", "E01")
	call(t, c, "?", "E01")
	call(t, c, "jThreadsInfo", "")
	call(t, c, "vAttach;1", "E01")
	call(t, c, "vAttach;zz", "E01")
	call(t, c, "vAttach;4d2", "T11thread:4d2;")
	call(t, c, "vAttach;4d2", "E01")
	call(t, c, "qProcessInfo", "pid:4d2;parent-pid:1;real-uid:1f5;real-gid:1f5;effective-uid:1f5;effective-gid:1f5;cputype:100000c;cpusubtype:2;ptrsize:8;ostype:ios;vendor:apple;endian:little;")
	call(t, c, "qfThreadInfo", "m4d2")
	call(t, c, "qsThreadInfo", "l")
	call(t, c, "?", "T11thread:4d2;")
	call(t, c, "Hg4d2", "OK")

	// Continue; an interrupt stops it again.
	if err := c.Write([]byte("c")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	c.Interrupt()
	p, err := c.Read()
	if err != nil || string(p.Data) != "T11thread:4d2;" {
		t.Fatalf("after interrupt: %q %v", p.Data, err)
	}
	// Continue again; the process ends (signalled): W00.
	if err := c.Write([]byte("vCont;c")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	close(tg.end)
	p, err = c.Read()
	if err != nil || string(p.Data) != "W00" {
		t.Fatalf("after the end: %q %v", p.Data, err)
	}
	call(t, c, "qProcessInfo", "E01")
	call(t, c, "c", "E01")
	call(t, c, "k", "X09")
	if _, err := c.Read(); err == nil {
		t.Error("connection open after k")
	}
	if tg.killed != 0 || tg.detached != 0 {
		t.Errorf("killed %d detached %d after the process ended on its own", tg.killed, tg.detached)
	}
}

// TestServerKillAndDetach: k kills the attached process; a debugger that
// leaves without k detaches it.
func TestServerKillAndDetach(t *testing.T) {
	tg := newTarget()
	c, done := serve(t, tg)
	call(t, c, "vAttach;4d2", "T11thread:4d2;")
	call(t, c, "k", "X09")
	<-done
	if tg.killed != 1 {
		t.Errorf("killed %d", tg.killed)
	}

	tg = newTarget()
	c, done = serve(t, tg)
	call(t, c, "vAttach;4d2", "T11thread:4d2;")
	c.Close()
	<-done
	if tg.detached != 1 || tg.killed != 0 {
		t.Errorf("detached %d killed %d", tg.detached, tg.killed)
	}

	// The debugger leaving while the process runs stops the wait.
	tg = newTarget()
	c, done = serve(t, tg)
	call(t, c, "vAttach;4d2", "T11thread:4d2;")
	c.Write([]byte("c"))
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("server still waiting for a process after the debugger left")
	}
	if tg.detached != 1 {
		t.Errorf("detached %d", tg.detached)
	}
}

type opener struct {
	tg   Target
	fail error
	wg   sync.WaitGroup
	n    int
	mu   sync.Mutex
}

func (o *opener) UDID() string { return "00008120-0000000000000001" }
func (o *opener) Open(ctx context.Context, s reach.Names) (net.Conn, error) {
	if s != reach.DebugProxy {
		return nil, errors.New("wrong service " + s.String())
	}
	if o.fail != nil {
		return nil, o.fail
	}
	o.mu.Lock()
	o.n++
	o.mu.Unlock()
	a, b := testkit.Pipe()
	o.wg.Go(func() { (&Server{Target: o.tg}).Serve(context.Background(), b) })
	return a, nil
}

func dialLocal(t *testing.T, f *Forwarder) *Conn {
	nc, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := NewConn(nc)
	c.Timeout = 5 * time.Second
	return c
}

// TestForwarder: each local connection gets its own device connection;
// Attach hands the debugger a stopped process; a device that cannot be
// reached drops the debugger and is reported.
func TestForwarder(t *testing.T) {
	testkit.CheckLeaks(t)
	tg := newTarget()
	o := &opener{tg: tg}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	f := NewForwarder(ln, ForwarderConfig{Opener: o, Prepare: Attach(1234)})
	c := dialLocal(t, f)
	// lldb's opening, in ack mode, finds the process stopped.
	c.c.Write([]byte("+"))
	call(t, c, "QStartNoAckMode", "OK")
	c.NoAck()
	call(t, c, "qProcessInfo", "pid:4d2;parent-pid:1;real-uid:1f5;real-gid:1f5;effective-uid:1f5;effective-gid:1f5;cputype:100000c;cpusubtype:2;ptrsize:8;ostype:ios;vendor:apple;endian:little;")
	call(t, c, "?", "T11thread:4d2;")
	c.Close()
	// A second connection: the first detached on leaving, so it attaches
	// again.
	c2 := dialLocal(t, f)
	call(t, c2, "?", "T11thread:4d2;")
	big := strings.Repeat("x", 100000)
	call(t, c2, "qEcho:"+big, "")
	f.Close()
	o.wg.Wait()
	if o.n != 2 {
		t.Errorf("%d device connections, want 2", o.n)
	}

	// The process is gone: Attach fails, the debugger is dropped.
	tg.Kill(1234)
	ln, _ = net.Listen("tcp", "127.0.0.1:0")
	f = NewForwarder(ln, ForwarderConfig{Opener: o, Prepare: Attach(1234)})
	c3 := dialLocal(t, f)
	if _, err := c3.Call("?"); err == nil {
		t.Error("debugger not dropped when the attach failed")
	}
	f.Close()
	if err := f.Err(); err == nil || !strings.Contains(err.Error(), "attach to pid 1234 refused") || !strings.Contains(err.Error(), "00008120-0000000000000001") {
		t.Errorf("Err() = %v", err)
	}
	o.wg.Wait()

	o.fail = &reach.NotListedError{UDID: o.UDID(), Service: reach.DebugProxy.RSD, Path: "RSD"}
	ln, _ = net.Listen("tcp", "127.0.0.1:0")
	f = NewForwarder(ln, ForwarderConfig{Opener: o})
	c4 := dialLocal(t, f)
	if _, err := c4.Call("?"); err == nil {
		t.Error("debugger not dropped without a device")
	}
	f.Close()
	if err := f.Err(); !errors.Is(err, reach.ErrNotListed) || !strings.Contains(err.Error(), "mount it first") {
		t.Errorf("Err() = %v", err)
	}
}

func TestDecodeBound(t *testing.T) {
	raw := append([]byte("a"), bytes.Repeat([]byte("*\xff"), MaxPacket/226+1)...)
	if _, err := Decode(raw); !errors.Is(err, ErrPacketTooLong) {
		t.Errorf("run-length past the bound: %v", err)
	}
}

// TestAttachWaitsForTheLastTracer: lldb reconnecting finds the process
// still held by the debugserver it just left; the attach is asked again
// until that one lets go, instead of dropping the debugger.
func TestAttachWaitsForTheLastTracer(t *testing.T) {
	testkit.CheckLeaks(t)
	tg := newTarget()
	if err := tg.Attach(1234); err != nil { // the tracer that is leaving
		t.Fatal(err)
	}
	time.AfterFunc(150*time.Millisecond, func() { tg.Detach(1234) })
	o := &opener{tg: tg}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	f := NewForwarder(ln, ForwarderConfig{Opener: o, Prepare: Attach(1234)})
	c := dialLocal(t, f)
	call(t, c, "?", "T11thread:4d2;")
	c.Close()
	f.Close()
	o.wg.Wait()
	if err := f.Err(); err != nil {
		t.Errorf("Err() = %v", err)
	}
}
