package coredevice

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/services/coredevice/coredevicetest"
	"github.com/iosmux/iosmux/xpc"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var vector = coredevicetest.Vector

func encode(t testing.TB, m xpc.Message) []byte {
	t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRequestVectors: every request of cd01–cd07 parses, and Body
// rebuilds it byte for byte (pymobiledevice3's key order and wire types).
func TestRequestVectors(t *testing.T) {
	want := map[string]string{
		"cd01_listapps_request":          "listapps",
		"cd02_launchapplication_request": "launchapplication",
		"cd03_listprocesses_request":     "listprocesses",
		"cd04_sendsignal_request":        "sendsignaltoprocess",
		"cd05_uninstallapp_request":      "uninstallapp",
		"cd06_getdeviceinfo_request":     "getdeviceinfo",
		"cd07_getdisplayinfo_request":    "getdisplayinfo",
	}
	for name, feature := range want {
		t.Run(name, func(t *testing.T) {
			raw, m := vector(t, name)
			if m.Flags != xpc.FlagsRequest {
				t.Errorf("flags %v", m.Flags)
			}
			req, err := ParseRequest(m.Body)
			if err != nil {
				t.Fatal(err)
			}
			if req.Name() != feature || req.Feature != Feature(feature) {
				t.Errorf("feature %q (%q), want %q", req.Name(), req.Feature, feature)
			}
			if req.InvocationID != "66666666-7777-4888-9999-aaaaaaaaaaaa" || req.DeviceID != "11111111-2222-4333-8444-555555555555" {
				t.Errorf("ids %q %q", req.InvocationID, req.DeviceID)
			}
			if req.DDIProtocolVersion != DefaultDDIProtocolVersion || req.Version.String != DefaultVersion.String ||
				len(req.Version.Components) != 2 || req.Version.Components[0] != 629 || req.Version.OriginalComponentsCount != 2 {
				t.Errorf("version %d %+v", req.DDIProtocolVersion, req.Version)
			}
			got := encode(t, xpc.Message{Flags: xpc.FlagsRequest, ID: m.ID, Body: req.Body()})
			if !bytes.Equal(got, raw) {
				t.Errorf("rebuilt request differs:\n got %x\nwant %x", got, raw)
			}
		})
	}
}

// TestNewRequestMatchesVector: the client's request for listprocesses with
// the vector's UUIDs is cd03.
func TestNewRequestMatchesVector(t *testing.T) {
	raw, _ := vector(t, "cd03_listprocesses_request")
	c := NewClient(ClientConfig{})
	req, err := c.NewRequest("listprocesses", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xpc.ParseUUID(req.InvocationID); err != nil || req.InvocationID == req.DeviceID {
		t.Errorf("ids %q %q", req.InvocationID, req.DeviceID)
	}
	req.InvocationID, req.DeviceID = "66666666-7777-4888-9999-aaaaaaaaaaaa", "11111111-2222-4333-8444-555555555555"
	got := encode(t, xpc.Message{Flags: xpc.FlagsRequest, ID: 3, Body: req.Body()})
	if !bytes.Equal(got, raw) {
		t.Errorf("request differs:\n got %x\nwant %x", got, raw)
	}
}

// TestStreamRequestVector: cd08 (streamapplist, other key order) parses.
func TestStreamRequestVector(t *testing.T) {
	_, m := vector(t, "cd08_streamapplist_request")
	req, err := ParseRequest(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	if req.Name() != "streamapplist" || !req.Input.Has("actualInput") || req.Input.Dict("streamProxy").UUID("sideChannel").IsZero() {
		t.Errorf("cd08 read as %+v", req)
	}
}

// TestReplyVectors: the replies parse to their output, cd16 to an *Error
// that re-encodes byte for byte and matches the sentinels.
func TestReplyVectors(t *testing.T) {
	for _, name := range []string{"cd11_listapps_reply", "cd12_launchapplication_reply", "cd13_listprocesses_reply", "cd14_sendsignal_reply", "cd15_uninstallapp_reply"} {
		raw, m := vector(t, name)
		if m.Flags != xpc.FlagsReplyMsg {
			t.Errorf("%s flags %v", name, m.Flags)
		}
		out, err := ParseReply(m.Body)
		if err != nil || out == nil {
			t.Errorf("%s: %v %v", name, out, err)
		}
		if got := encode(t, xpc.Message{Flags: xpc.FlagsReplyMsg, ID: m.ID, Body: OutputBody(out)}); !bytes.Equal(got, raw) {
			t.Errorf("%s: OutputBody differs", name)
		}
	}
	raw, m := vector(t, "cd16_error_reply")
	_, err := ParseReply(m.Body)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("cd16: %v", err)
	}
	if e.Domain != DomainCoreDevice || e.Code != 10002 || e.UserInfo[KeyDescription] != "The application failed to launch." {
		t.Errorf("cd16 read as %+v", e)
	}
	if !errors.Is(e, ErrLaunchFailed) || !errors.Is(e, ErrNotInstalled) || errors.Is(e, ErrNoSuchProcess) {
		t.Errorf("cd16 sentinels wrong")
	}
	if got := e.Error(); !strings.Contains(got, "The application failed to launch. The requested application com.example.missing is not installed. [com.apple.dt.CoreDeviceError 10002]") {
		t.Errorf("message %q", got)
	}
	if got := encode(t, xpc.Message{Flags: xpc.FlagsReplyMsg, ID: m.ID, Body: e.Body()}); !bytes.Equal(got, raw) {
		t.Errorf("cd16 re-encoded differs:\n got %x\nwant %x", got, raw)
	}
	if _, err := ParseReply(xpc.NewDict("other", xpc.Bool(true))); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("reply without output: %v", err)
	}
}

// pipeServer serves srv on one end of an in-memory pipe per Open and counts
// the connections.
type pipeServer struct {
	srv   *Server
	opens atomic.Int32
	wg    sync.WaitGroup
}

func (p *pipeServer) open(ctx context.Context) (*xpc.Conn, error) {
	p.opens.Add(1)
	a, b := testkit.Pipe()
	p.wg.Go(func() { p.srv.ServeConn(context.WithoutCancel(ctx), b) })
	return xpc.Client(ctx, a, nil)
}

func echoServer() *Server {
	s := &Server{Name: "test"}
	s.Handle("echo", func(ctx context.Context, r *Request) (xpc.Value, error) {
		return xpc.NewDict("in", r.Input, "invocation", xpc.String(r.InvocationID)), nil
	})
	s.Handle("refuse", func(ctx context.Context, r *Request) (xpc.Value, error) {
		return nil, Errorf(CodeNoSuchProcess, "No such process", "pid %d", r.Input.Int64("pid"))
	})
	s.Handle("plain", func(ctx context.Context, r *Request) (xpc.Value, error) {
		return nil, errors.New("plain failure")
	})
	s.Handle("wait", func(ctx context.Context, r *Request) (xpc.Value, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	return s
}

func TestClientServer(t *testing.T) {
	for _, oneShot := range []bool{false, true} {
		t.Run(map[bool]string{false: "reused", true: "oneshot"}[oneShot], func(t *testing.T) {
			testkit.CheckLeaks(t)
			ctx := ctxT(t)
			ps := &pipeServer{srv: echoServer()}
			c := NewClient(ClientConfig{Open: ps.open, UDID: "U", Service: "svc", OneShot: oneShot})
			var seen []string
			for i := range 3 {
				out, err := c.Invoke(ctx, "echo", xpc.NewDict("n", xpc.Int64(int64(i))))
				if err != nil {
					t.Fatal(err)
				}
				d := out.(*xpc.Dict)
				if d.Dict("in").Int64("n") != int64(i) {
					t.Errorf("echo %d: %v", i, d)
				}
				seen = append(seen, d.String("invocation"))
			}
			if seen[0] == seen[1] || seen[1] == seen[2] {
				t.Errorf("invocation ids repeat: %v", seen)
			}
			_, err := c.Invoke(ctx, "refuse", xpc.NewDict("pid", xpc.Int64(7)))
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrNoSuchProcess) || e.Feature != Feature("refuse") || e.UDID != "U" ||
				!strings.Contains(err.Error(), "U: refuse: No such process pid 7") {
				t.Errorf("refusal: %v", err)
			}
			_, err = c.Invoke(ctx, "plain", nil)
			if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "plain failure") {
				t.Errorf("plain error: %v", err)
			}
			_, err = c.Invoke(ctx, "nosuch", nil)
			if !errors.Is(err, ErrNotImplemented) || !strings.Contains(err.Error(), "Action 'com.apple.coredevice.feature.nosuch' is not implemented.") {
				t.Errorf("unknown feature: %v", err)
			}
			want := int32(1)
			if oneShot {
				want = 6
			}
			if got := ps.opens.Load(); got != want {
				t.Errorf("%d connections opened, want %d", got, want)
			}
			c.Close()
			ps.wg.Wait()
		})
	}
}

// TestReconnectAfterHangup: a device that hangs up after a reply gets a
// new connection on the next call.
func TestReconnectAfterHangup(t *testing.T) {
	ctx := ctxT(t)
	srv := echoServer()
	var opens atomic.Int32
	open := func(ctx context.Context) (*xpc.Conn, error) {
		opens.Add(1)
		a, b := testkit.Pipe()
		go func() {
			conn, err := xpc.Server(ctx, b, nil)
			if err != nil {
				return
			}
			m, _, err := conn.Receive(ctx)
			if err == nil {
				conn.Reply(ctx, m, srv.Answer(ctx, m.Body))
			}
			time.Sleep(10 * time.Millisecond)
			conn.Close()
		}()
		return xpc.Client(ctx, a, nil)
	}
	c := NewClient(ClientConfig{Open: open})
	defer c.Close()
	for i := range 3 {
		if _, err := c.Invoke(ctx, "echo", nil); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		// wait for the hang-up to be seen
		deadline := time.Now().Add(5 * time.Second)
		for {
			c.mu.Lock()
			conn := c.conn
			c.mu.Unlock()
			select {
			case <-conn.Done():
			default:
				if time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				t.Fatal("device hang-up not seen")
			}
			break
		}
	}
	if opens.Load() != 3 {
		t.Errorf("%d opens, want 3", opens.Load())
	}
}

// TestFeatureGate: a feature the RSD entry does not list is refused
// without opening anything; an empty list gates nothing.
func TestFeatureGate(t *testing.T) {
	ctx := ctxT(t)
	ps := &pipeServer{srv: echoServer()}
	c := NewClient(ClientConfig{Open: ps.open, UDID: "U", Service: "com.apple.coredevice.appservice",
		Features: []string{Feature("echo"), Feature("listapps")}})
	defer c.Close()
	_, err := c.Invoke(ctx, "launchapplication", nil)
	var fe *FeatureError
	if !errors.As(err, &fe) || !errors.Is(err, ErrFeatureNotListed) ||
		!strings.Contains(err.Error(), "com.apple.coredevice.appservice does not offer launchapplication (it lists echo, listapps)") {
		t.Errorf("gate: %v", err)
	}
	if ps.opens.Load() != 0 {
		t.Errorf("the gate opened %d connections", ps.opens.Load())
	}
	if _, err := c.Invoke(ctx, Feature("echo"), nil); err != nil {
		t.Errorf("listed feature: %v", err)
	}
	open := NewClient(ClientConfig{Open: ps.open})
	defer open.Close()
	if _, err := open.Invoke(ctx, "nosuch", nil); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("ungated unknown feature: %v", err)
	}
}

// TestServerValidation: envelopes without feature/action or input are
// refused with CoreDeviceError 1; an action identifier is dispatched like
// a feature; the listing is in registration order.
func TestServerValidation(t *testing.T) {
	ctx := ctxT(t)
	s := echoServer()
	s.Handle(ActionPrefix+"ping", func(context.Context, *Request) (xpc.Value, error) { return xpc.String("pong"), nil })
	check := func(body *xpc.Dict, code int64, domain string) {
		t.Helper()
		_, err := ParseReply(s.Answer(ctx, body))
		var e *Error
		if !errors.As(err, &e) || e.Code != code || e.Domain != domain {
			t.Errorf("answer to %v: %v", body, err)
		}
	}
	check(xpc.NewDict(KeyInput, xpc.NewDict()), CodeInvalidRequest, DomainCoreDevice)
	check(xpc.NewDict(KeyFeature, xpc.String(Feature("echo"))), CodeInvalidRequest, DomainCoreDevice)
	check(xpc.NewDict(KeyFeature, xpc.String(Feature("echo")), KeyInput, xpc.Array{}), CodeInvalidRequest, DomainCoreDevice)
	check(xpc.NewDict(KeyActionIdentifier, xpc.String(ActionPrefix+"nope"), KeyInput, xpc.NewDict()), CodeNotImplemented, DomainAction)
	out, err := ParseReply(s.Answer(ctx, xpc.NewDict(KeyActionIdentifier, xpc.String(ActionPrefix+"ping"), KeyInput, xpc.NewDict())))
	if err != nil || out != xpc.String("pong") {
		t.Errorf("action: %v %v", out, err)
	}
	if f := s.Features(); len(f) != 4 || f[0] != Feature("echo") || f[3] != Feature("wait") {
		t.Errorf("features %v", f)
	}
	p := s.Properties()
	if p.Array("Features").Strings()[1] != Feature("refuse") || !p.Bool("UsesRemoteXPC") || p.Int64("ServiceVersion") != 1 {
		t.Errorf("properties %v", p)
	}
}

// TestConcurrentInvocations: a waiting invocation does not hold up others
// on the same connection, and ends when the host hangs up.
func TestConcurrentInvocations(t *testing.T) {
	testkit.CheckLeaks(t)
	ctx := ctxT(t)
	ps := &pipeServer{srv: echoServer()}
	c := NewClient(ClientConfig{Open: ps.open})
	wctx, wcancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() { _, err := c.Invoke(wctx, "wait", nil); waited <- err }()
	for range 5 {
		if _, err := c.Invoke(ctx, "echo", nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-waited:
		t.Fatalf("wait returned early: %v", err)
	default:
	}
	wcancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
	c.Close()
	ps.wg.Wait()
}

// TestServerIgnoresOneWay: a message without WANTS_REPLY gets no answer,
// and the next request still does.
func TestServerIgnoresOneWay(t *testing.T) {
	ctx := ctxT(t)
	a, b := testkit.Pipe()
	s := echoServer()
	done := make(chan struct{})
	go func() { s.ServeConn(ctx, b); close(done) }()
	conn, err := xpc.Client(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Feature: Feature("echo"), InvocationID: "x"}
	if err := conn.Send(ctx, xpc.RootChannel, &xpc.Message{Flags: xpc.FlagsMsg, ID: 9, Body: req.Body()}); err != nil {
		t.Fatal(err)
	}
	m, err := conn.Request(ctx, req.Body())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ParseReply(m.Body); err != nil || out.(*xpc.Dict).String("invocation") != "x" {
		t.Errorf("reply %v %v", out, err)
	}
	conn.Close()
	<-done
}
