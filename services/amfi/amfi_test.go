package amfi

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/reach"
)

// fakeDevice is the simulator's Developer Mode state machine in small:
// off → armed (reboot pending) → awaiting accept (after the reboot) → on.
type fakeDevice struct {
	mu       sync.Mutex
	state    string
	passcode bool
	revealed bool
	// rebooted holds a signal once the device has rebooted since the last
	// AwaitReboot: the server reboots the device after its arm reply is
	// out, so a host that waits for the reboot must not look before it has
	// happened. Reboots nobody awaited leave one signal, never a blocked
	// server.
	rebooted chan struct{}
}

func (d *fakeDevice) DeveloperMode() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.state == "on" }
func (d *fakeDevice) Reveal() error       { d.mu.Lock(); defer d.mu.Unlock(); d.revealed = true; return nil }
func (d *fakeDevice) Arm() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.passcode {
		return errors.New("Device has a passcode set")
	}
	if d.state == "off" {
		d.state = "armed"
	}
	return nil
}
func (d *fakeDevice) Accept() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != "awaiting" {
		return errors.New("Developer Mode is not waiting for acceptance")
	}
	d.state = "on"
	return nil
}
func (d *fakeDevice) reboot() {
	d.mu.Lock()
	if d.state == "armed" {
		d.state = "awaiting"
	}
	d.mu.Unlock()
	select {
	case d.rebooted <- struct{}{}:
	default: // a signal is already waiting
	}
}

// opener serves amfi over pipes; lockdown values come from the device.
type opener struct {
	srv     *Server
	d       *fakeDevice
	reboots int
	wg      sync.WaitGroup
}

func (o *opener) UDID() string { return "00008120-0000000000000001" }
func (o *opener) Open(ctx context.Context, s reach.Names) (net.Conn, error) {
	if s != reach.AMFI {
		return nil, &reach.NotListedError{Service: s.String()}
	}
	a, b := net.Pipe()
	o.wg.Go(func() { defer b.Close(); o.srv.Serve(context.Background(), b) })
	return a, nil
}
func (o *opener) GetValue(ctx context.Context, domain, key string) (any, error) {
	if domain != StatusDomain || key != StatusKey {
		return nil, lockdown.ErrMissingValue
	}
	return o.d.DeveloperMode(), nil
}
func (o *opener) AwaitReboot(ctx context.Context) (reach.Opener, error) {
	o.reboots++
	select {
	case <-o.d.rebooted:
		return o, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func newOpener(passcode bool) *opener {
	d := &fakeDevice{state: "off", passcode: passcode, rebooted: make(chan struct{}, 1)}
	return &opener{d: d, srv: &Server{Device: d, AfterArm: d.reboot}}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func frame(t *testing.T, name string) lockdown.Message {
	b := testkit.ReadHex(t, name)
	m, err := lockdown.ParseMessage(b[4:])
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestVectors: Arm sends lp07's request; lp08 is a success.
func TestVectors(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go NewClient(b).Arm(context.Background())
	got, err := lockdown.NewPlistConn(a, 0).ReceiveMessage(ctxT(t))
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := frame(t, "lp07_amfi_enable_request.hex")
	if len(got) != 1 || got["action"] != want["action"] {
		t.Errorf("request %v, want %v", got, want)
	}
	if err := checkReply(ActionArm, frame(t, "lp08_amfi_success_reply.hex")); err != nil {
		t.Errorf("lp08: %v", err)
	}
	for _, rep := range []lockdown.Message{{}, {"success": false}, {"Error": "x", "success": true}} {
		if checkReply(ActionArm, rep) == nil {
			t.Errorf("%v accepted", rep)
		}
	}
}

func TestEnable(t *testing.T) {
	ctx := ctxT(t)
	o := newOpener(false)
	defer o.wg.Wait()
	// Accept before arming is named plainly.
	if err := Run(ctx, o, ActionAccept); !errors.Is(err, ErrNotArmed) {
		t.Errorf("early accept: %v", err)
	}
	var steps []Step
	no, err := Enable(ctx, o, EnableConfig{Progress: func(s Step) { steps = append(steps, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if no == nil || o.reboots != 1 || !o.d.DeveloperMode() || len(steps) != 5 || steps[4] != StepDone {
		t.Errorf("after Enable: reboots %d, on %v, steps %v", o.reboots, o.d.DeveloperMode(), steps)
	}
	if _, err := Enable(ctx, o, EnableConfig{}); !errors.Is(err, ErrAlreadyOn) {
		t.Errorf("second Enable: %v", err)
	}
	c, _ := o.Open(ctx, reach.AMFI)
	cl := NewClient(c)
	if on, err := cl.Status(ctx); err != nil || !on {
		t.Errorf("Status = %v, %v", on, err)
	}
	if _, err := cl.Do(ctx, 9); err == nil || !strings.Contains(err.Error(), "Unsupported action") {
		t.Errorf("unknown action: %v", err)
	}
	cl.Close()
}

func TestEnablePasscode(t *testing.T) {
	o := newOpener(true)
	defer o.wg.Wait()
	_, err := Enable(ctx(t), o, EnableConfig{})
	if !errors.Is(err, ErrPasscodeSet) || !strings.Contains(err.Error(), "Privacy & Security") || !o.d.revealed || o.reboots != 0 {
		t.Errorf("Enable with a passcode: %v (revealed %v, reboots %d)", err, o.d.revealed, o.reboots)
	}
}

func ctx(t *testing.T) context.Context { return ctxT(t) }

// FuzzAMFI: the host's reply check and the device's answer on any frame
// payload: no panic, and a reply is either success or an error.
func FuzzAMFI(f *testing.F) {
	for _, n := range []string{"lp07_amfi_enable_request.hex", "lp08_amfi_success_reply.hex"} {
		f.Add(testkit.ReadHex(f, n)[4:])
	}
	f.Add([]byte(`<plist><dict><key>action</key><string>1</string></dict></plist>`))
	srv := &Server{Device: &fakeDevice{state: "off"}}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := lockdown.ParseMessage(payload)
		if err != nil {
			return
		}
		checkReply(ActionArm, m)
		a, ok := m.Uint("action")
		if rep, _ := srv.answer(Action(a), ok); rep["Error"] == nil && rep["success"] != true {
			t.Fatalf("reply %v is neither success nor error", rep)
		}
	})
}
