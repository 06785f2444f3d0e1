package dylib_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/dylib"
	"github.com/iosmux/iosmux/dylib/dylibtest"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/xpc"
)

var testBuild = dylib.Build{CoreDevice: "cd-1", CoreDeviceUtilities: "cdu-1", Mercury: "m-1"}

const pairID = "com.apple.coredevice.action.pair"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func fake(t *testing.T, wait time.Duration) *dylibtest.Fake {
	t.Helper()
	f, err := dylibtest.Listen(dylibtest.Config{Dir: t.TempDir(), Hello: dylib.Hello{Arch: "x86_64", DylibVersion: "test", Build: testBuild},
		Server: dylib.ServerConfig{Wait: wait}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func dial(t *testing.T, f *dylibtest.Fake, cfg dylib.ClientConfig, devices ...xpc.UUID) (*dylib.Client, error) {
	t.Helper()
	nc, err := net.Dial("unix", f.Path())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Builds == nil {
		cfg.Builds = []dylib.Build{testBuild}
	}
	if cfg.Allow == nil {
		cfg.Allow = []string{pairID}
	}
	c, err := dylib.NewClient(ctxT(t), nc, cfg, devices)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func pairRequest(dev xpc.UUID) *xpc.Dict {
	return xpc.NewDict("CoreDevice.actionIdentifier", xpc.String(pairID),
		"CoreDevice.invocationIdentifier", xpc.String("inv"),
		"CoreDevice.deviceIdentifier", xpc.String(strings.ToUpper(dev.String())),
		"CoreDevice.coreDeviceVersion", xpc.NewDict(),
		"CoreDevice.input", xpc.NewDict("ep", xpc.NewHandle(xpc.KindEndpoint, 3)))
}

var devU = xpc.UUID{0x6f, 0x1d, 0x0e, 0x8a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClientServer(t *testing.T) {
	defer testkit.CheckLeaks(t)
	f := fake(t, 2*time.Second)
	var seen *xpc.Dict
	c, err := dial(t, f, dylib.ClientConfig{Action: func(ctx context.Context, req *xpc.Dict) dylib.ActionResponse {
		seen = req
		return dylib.ActionResponse{Disposition: dylib.DispositionReply, Reply: xpc.NewDict("CoreDevice.output", xpc.NewDict())}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Hello(); h.Build != testBuild || h.Arch != "x86_64" {
		t.Fatalf("hello %+v", h)
	}
	s, err := f.WaitConnected(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// Before DEVICE_ATTACH the device is not iosmux's: passthrough, and
	// nothing is asked.
	if o := f.Invoke(ctxT(t), pairRequest(devU)); o.Handled || o.Why != "not an iosmux device" {
		t.Fatalf("before attach: %+v", o)
	}
	name := "iPhone"
	if err := c.Attach(dylib.RemoteDevice{UUID: devU, Name: &name, OSState: dylib.OSStateConnected, Properties: xpc.NewDict("ProductType", xpc.String("iPhone14,6"))}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "DEVICE_ATTACH", func() bool { return s.Attached(devU) })
	o := f.Invoke(ctxT(t), pairRequest(devU))
	if !o.Handled || o.Reply.Dict("CoreDevice.output") == nil {
		t.Fatalf("attached device: %+v", o)
	}
	if ep, _ := seen.Dict("CoreDevice.input").Get("ep").(xpc.Opaque).Handle(); ep != 3 {
		t.Errorf("handle did not cross: %v", seen)
	}
	// Not allow-listed, not an action.
	other := pairRequest(devU).Set("CoreDevice.actionIdentifier", xpc.String("com.apple.coredevice.action.other"))
	if o := f.Invoke(ctxT(t), other); o.Handled || o.Why != "not allow-listed" {
		t.Errorf("other action: %+v", o)
	}
	if o := f.Invoke(ctxT(t), xpc.NewDict("mangledTypeName", xpc.String("x"))); o.Handled {
		t.Errorf("non-action handled")
	}
	// DEVICE_UPDATE replaces, DEVICE_DETACH removes.
	c.Update(dylib.RemoteDevice{UUID: devU, OSState: dylib.OSStateConnected, Properties: xpc.NewDict("ProductType", xpc.String("iPhone15,2"))})
	waitFor(t, "DEVICE_UPDATE", func() bool { d, _ := s.Device(devU); return d.Properties.String("ProductType") == "iPhone15,2" })
	c.Detach(devU)
	waitFor(t, "DEVICE_DETACH", func() bool { return !s.Attached(devU) })
	if o := f.Invoke(ctxT(t), pairRequest(devU)); o.Handled {
		t.Error("detached device handled")
	}
	c.Close()
	s.Close()
	f.Close()
}

// HELLO_ACK's device list feeds the fast path before any ATTACH.
func TestHelloAckDevices(t *testing.T) {
	f := fake(t, time.Second)
	if _, err := dial(t, f, dylib.ClientConfig{Action: func(context.Context, *xpc.Dict) dylib.ActionResponse {
		return dylib.ActionResponse{Disposition: dylib.DispositionPassthrough}
	}}, devU); err != nil {
		t.Fatal(err)
	}
	s, _ := f.WaitConnected(ctxT(t))
	if !s.Attached(devU) {
		t.Fatal("device of HELLO_ACK not known")
	}
	if o := f.Invoke(ctxT(t), pairRequest(devU)); o.Handled || o.Why != "iosmux: passthrough" {
		t.Errorf("passthrough disposition: %+v", o)
	}
}

// Go's own deadline: a slow handler is answered passthrough in time.
func TestClientDeadline(t *testing.T) {
	f := fake(t, 3*time.Second)
	release := make(chan struct{})
	defer close(release)
	if _, err := dial(t, f, dylib.ClientConfig{Deadline: 50 * time.Millisecond, Action: func(ctx context.Context, _ *xpc.Dict) dylib.ActionResponse {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return dylib.ActionResponse{Disposition: dylib.DispositionReply, Reply: xpc.NewDict()}
	}}, devU); err != nil {
		t.Fatal(err)
	}
	f.WaitConnected(ctxT(t))
	start := time.Now()
	o := f.Invoke(ctxT(t), pairRequest(devU))
	if o.Handled || o.Why != "iosmux: passthrough" || time.Since(start) > 2*time.Second {
		t.Fatalf("slow handler: %+v after %v", o, time.Since(start))
	}
}

// The dylib's deadline: iosmux silent → timeout → passthrough; socket
// closed mid-request → passthrough at once.
func TestServerTimeoutAndClose(t *testing.T) {
	f := fake(t, 200*time.Millisecond)
	block := make(chan struct{})
	started := make(chan struct{}, 4)
	c, err := dial(t, f, dylib.ClientConfig{Deadline: time.Minute, Action: func(ctx context.Context, _ *xpc.Dict) dylib.ActionResponse {
		started <- struct{}{}
		select {
		case <-block:
		case <-ctx.Done():
		}
		return dylib.ActionResponse{Disposition: dylib.DispositionPassthrough}
	}}, devU)
	if err != nil {
		t.Fatal(err)
	}
	f.WaitConnected(ctxT(t))
	o := f.Invoke(ctxT(t), pairRequest(devU))
	if o.Handled || !strings.Contains(o.Why, "no answer within") {
		t.Fatalf("silent iosmux: %+v", o)
	}
	<-started
	done := make(chan dylibtest.Outcome, 1)
	go func() { done <- f.Invoke(ctxT(t), pairRequest(devU)) }()
	<-started
	c.Close() // socket closed mid-request
	select {
	case o := <-done:
		if o.Handled || !strings.Contains(o.Why, "passthrough") {
			t.Fatalf("closed mid-request: %+v", o)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no passthrough after the socket closed")
	}
	close(block)
	if o := f.Invoke(ctxT(t), pairRequest(devU)); o.Handled {
		t.Fatal("handled with iosmux gone")
	}
}

func TestUnknownBuildRefused(t *testing.T) {
	f := fake(t, time.Second)
	_, err := dial(t, f, dylib.ClientConfig{Builds: []dylib.Build{{CoreDevice: "other"}},
		Action: func(context.Context, *xpc.Dict) dylib.ActionResponse { return dylib.ActionResponse{} }})
	if !errors.Is(err, dylib.ErrUnknownBuild) {
		t.Fatalf("got %v, want ErrUnknownBuild", err)
	}
	// The refusal names the build in the form the user allows it with.
	var ub *dylib.UnknownBuildError
	if !errors.As(err, &ub) || ub.Build != testBuild {
		t.Fatalf("refusal %v does not carry the build %v", err, testBuild)
	}
	if b, err := dylib.ParseBuild(ub.Build.ID()); err != nil || b != testBuild {
		t.Errorf("ParseBuild(%q) = %v, %v", ub.Build.ID(), b, err)
	}
	for _, bad := range []string{"", "a,b", "a,,c", "a,b,c,d", " ,b,c"} {
		if _, err := dylib.ParseBuild(bad); err == nil {
			t.Errorf("ParseBuild(%q) accepted", bad)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := f.WaitConnected(ctx); err == nil {
		t.Fatal("fake connected with a refused build")
	}
	if _, err := dial(t, f, dylib.ClientConfig{Builds: []dylib.Build{}, AcceptUnknownBuilds: true,
		Action: func(context.Context, *xpc.Dict) dylib.ActionResponse { return dylib.ActionResponse{} }}); err != nil {
		t.Fatalf("AcceptUnknownBuilds: %v", err)
	}
}

// A frame of a kind iosmux never sends makes the dylib answer ERROR and
// close.
func TestServerUnknownKind(t *testing.T) {
	f := fake(t, time.Second)
	nc, err := net.Dial("unix", f.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	conn := dylib.NewConn(nc)
	hello, err := conn.ReadFrame()
	if err != nil || hello.Kind != dylib.KindHello {
		t.Fatalf("HELLO: %v %v", hello.Kind, err)
	}
	conn.WriteFrame(dylib.Frame{Kind: dylib.KindHelloAck, Flags: dylib.FlagResponse, Payload: dylib.HelloAck{Protocol: 1}.Value()}, time.Second)
	conn.WriteFrame(dylib.Frame{Kind: 0x55, Payload: xpc.NewDict()}, time.Second)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	fr, err := conn.ReadFrame()
	if err != nil || fr.Kind != dylib.KindError {
		t.Fatalf("got %v %v, want ERROR", fr.Kind, err)
	}
	if e, _ := dylib.ParseError(fr.Payload); e.Code != "kind" {
		t.Errorf("ERROR code %q", e.Code)
	}
	if _, err := conn.ReadFrame(); err == nil {
		t.Error("connection still open after ERROR")
	}
}
