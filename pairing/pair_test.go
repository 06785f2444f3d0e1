package pairing

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// testDevice serves a device role on in-memory connections: every dial
// makes a net.Pipe, serves the device end on a goroutine the test waits for,
// and hands the host end to the caller.
type testDevice struct {
	t     *testing.T
	dev   *Server
	hosts *MemoryHosts
	wg    sync.WaitGroup
	mu    sync.Mutex
	errs  []error
	// Tampering hooks, by dial number (0 first): wrap the host's
	// transport, the host's conn or the device's conn.
	wrap     func(dial int, t Transport) Transport
	hostConn func(dial int, c net.Conn) net.Conn
	devConn  func(dial int, c net.Conn) net.Conn
	dials    int
}

func newTestDevice(t *testing.T, mutate func(*ServerConfig)) *testDevice {
	t.Helper()
	td := &testDevice{t: t, hosts: &MemoryHosts{}}
	cfg := &ServerConfig{
		Identity:  vecDevice,
		Handshake: vecHandshake,
		Mode:      ModeTrust,
		Hosts:     td.hosts,
		CreateListener: func(ctx context.Context, host string, req ListenerRequest) (*Listener, error) {
			if req.Transport != TransportTCP {
				return nil, errors.New("QUIC is not supported")
			}
			return &Listener{Port: vecPort}, nil
		},
	}
	if mutate != nil {
		mutate(cfg)
	}
	dev, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	td.dev = dev
	t.Cleanup(td.wait)
	return td
}

func (td *testDevice) dial(ctx context.Context) (Transport, error) {
	hc, dc := net.Pipe()
	td.mu.Lock()
	n := td.dials
	td.dials++
	td.mu.Unlock()
	if td.hostConn != nil {
		hc = td.hostConn(n, hc)
	}
	if td.devConn != nil {
		dc = td.devConn(n, dc)
	}
	dt := NewRPPairing(dc)
	td.wg.Add(1)
	go func() {
		defer td.wg.Done()
		err := td.dev.Serve(context.Background(), dt)
		dt.Close()
		if err != nil {
			td.mu.Lock()
			td.errs = append(td.errs, err)
			td.mu.Unlock()
		}
	}()
	var ht Transport = NewRPPairing(hc)
	if td.wrap != nil {
		ht = td.wrap(n, ht)
	}
	return ht, nil
}

// wait returns once every served connection has ended; the host side must
// have closed its ends.
func (td *testDevice) wait() { td.wg.Wait() }

func (td *testDevice) deviceErrors() []error {
	td.wg.Wait()
	td.mu.Lock()
	defer td.mu.Unlock()
	return append([]error(nil), td.errs...)
}

func testCtx(t *testing.T) context.Context {
	// A safety net only: a hang shows up as context.DeadlineExceeded,
	// which every test treats as a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func hostConfig() ClientConfig {
	return ClientConfig{HostName: vecHostName}
}

func TestPairThenVerify(t *testing.T) {
	ctx := testCtx(t)
	var consents int
	td := newTestDevice(t, nil)
	store := RecordStore{Dir: t.TempDir()}
	hc := hostConfig()
	hc.AwaitingConsent = func() { consents++ }
	cfg := &PairConfig{Host: hc, Dial: td.dial, Store: store}

	res, err := Pair(ctx, cfg)
	if err != nil {
		t.Fatalf("Pair: %v", err)
	}
	if res.AlreadyPaired || res.ID != vecDeviceUDID || consents != 1 {
		t.Errorf("result %+v, consents %d", res, consents)
	}
	if res.Peer == nil || res.Peer.UDID != vecDeviceUDID || !res.Peer.SignatureOK {
		t.Errorf("peer %+v", res.Peer)
	}
	if td.dials != 2 {
		t.Errorf("dialled %d times, want 2 (pair, then reconnect and verify)", td.dials)
	}
	rec, err := store.Load(vecDeviceUDID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.HostIdentifier != vecHostID || rec.RemoteUnlockHostKey == "" || rec.PeerUDID != vecDeviceUDID {
		t.Errorf("record %+v", rec)
	}
	st, err := os.Stat(res.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v, %v", st.Mode(), err)
	}
	if hs := td.hosts.Hosts(); len(hs) != 1 || hs[0].Identifier != vecHostID || hs[0].Info.Name != vecHostName {
		t.Errorf("device stored %+v", hs)
	}

	// Second run: the record verifies; no consent, nothing rewritten.
	before, _ := os.ReadFile(res.Path)
	res2, err := Pair(ctx, cfg)
	if err != nil || !res2.AlreadyPaired {
		t.Fatalf("second Pair: %+v, %v", res2, err)
	}
	after, _ := os.ReadFile(res.Path)
	if consents != 1 || string(before) != string(after) {
		t.Errorf("second Pair asked consent (%d) or rewrote the record", consents)
	}

	// The verified session gives a listener and the PSK.
	t3, _ := td.dial(ctx)
	h := NewClient(t3, &hc)
	defer h.Close()
	if _, err := h.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(ctx, rec.Identity(vecHostID)); err != nil {
		t.Fatal(err)
	}
	psk := h.SharedSecret()
	l, err := h.CreateListener(ctx, ListenerRequest{Transport: TransportTCP, Key: psk,
		PeerConnections: []PeerConnection{{OwningPID: vecPID, OwningProcessName: "CoreDeviceService"}}})
	if err != nil || l.Port != vecPort || len(psk) != 32 {
		t.Errorf("CreateListener: %+v, %v (psk %d bytes)", l, err, len(psk))
	}
	_, err = h.CreateListener(ctx, ListenerRequest{Transport: TransportQUIC, Key: []byte{1}})
	var re *RequestError
	if !errors.As(err, &re) || re.Description != "QUIC is not supported" {
		t.Errorf("quic listener: got %v, want the device's refusal", err)
	}
	// The channel survives a refusal.
	if k, err := h.CreateRemoteUnlockKey(ctx); err != nil || k == "" {
		t.Errorf("CreateRemoteUnlockKey after a refusal: %q, %v", k, err)
	}
	h.Close()
	if errs := td.deviceErrors(); len(errs) != 0 {
		t.Errorf("device errors: %v", errs)
	}
}

// TestUnknownHostFallsBack: a record the device does not know fails verify
// with ERROR 2 at M4, and Pair falls back to setup on the same connection.
func TestUnknownHostFallsBack(t *testing.T) {
	ctx := testCtx(t)
	td := newTestDevice(t, nil)
	store := RecordStore{Dir: t.TempDir()}
	stale := &Record{PrivateKey: vecHostSeed, PublicKey: ed25519.NewKeyFromSeed(vecHostSeed).Public().(ed25519.PublicKey)}
	if _, err := store.Save(vecDeviceUDID, stale); err != nil {
		t.Fatal(err)
	}

	// The bare verify first: exactly the failure of remotepairing.md §3.5.
	tr, _ := td.dial(ctx)
	hc := hostConfig()
	h := NewClient(tr, &hc)
	if _, err := h.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	err := h.Verify(ctx, stale.Identity(vecHostID))
	var pe *Error
	var de *DeviceError
	if !errors.As(err, &pe) || pe.Step != StepVerifyM4 || !errors.As(err, &de) || de.Code != CodeAuthentication {
		t.Fatalf("verify of an unknown host: got %v, want ERROR 2 at %s", err, StepVerifyM4)
	}
	// The session is still usable for setup.
	if _, err := h.Setup(ctx); err != nil {
		t.Fatalf("setup after failed verify: %v", err)
	}
	h.Close()

	td2 := newTestDevice(t, nil)
	res, err := Pair(ctx, &PairConfig{Host: hc, Dial: td2.dial, Store: store})
	if err != nil || res.AlreadyPaired {
		t.Fatalf("Pair: %+v, %v", res, err)
	}
	rec, _ := store.Load(vecDeviceUDID)
	if string(rec.PrivateKey) == string(vecHostSeed) {
		t.Error("the stale record was not replaced")
	}
}

func TestRefusedConsent(t *testing.T) {
	ctx := testCtx(t)
	td := newTestDevice(t, func(c *ServerConfig) {
		c.Consent = func(context.Context, string) (bool, error) { return false, nil }
		c.RejectDescription = "The user tapped Don't Trust."
	})
	store := RecordStore{Dir: t.TempDir()}
	_, err := Pair(ctx, &PairConfig{Host: hostConfig(), Dial: td.dial, Store: store})
	var re *RejectedError
	if !errors.Is(err, ErrRejected) || !errors.As(err, &re) || re.Description != "The user tapped Don't Trust." {
		t.Fatalf("got %v, want the rejection", err)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Step != StepSetupM2 {
		t.Errorf("step: %v", err)
	}
	if l, _ := store.List(); len(l) != 0 {
		t.Errorf("records written: %v", l)
	}
}

func TestPINMode(t *testing.T) {
	tests := []struct {
		name    string
		pin     string
		wantErr error
	}{
		{"right PIN", "", nil},
		{"wrong PIN", "000001", ErrAuthentication},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			shown := make(chan string, 1)
			td := newTestDevice(t, func(c *ServerConfig) {
				c.Mode = ModePIN
				c.ShowPIN = func(p string) { shown <- p }
			})
			hc := hostConfig()
			hc.PIN = func(context.Context) (string, error) {
				p := <-shown
				if len(p) != 6 {
					t.Errorf("PIN %q", p)
				}
				if tt.pin != "" {
					return tt.pin, nil
				}
				return p, nil
			}
			hc.AwaitingConsent = func() { t.Error("consent event in PIN mode") }
			_, err := Pair(ctx, &PairConfig{Host: hc, Dial: td.dial, Store: RecordStore{Dir: t.TempDir()}, Identifier: "appletv"})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			var pe *Error
			if tt.wantErr != nil && (!errors.As(err, &pe) || pe.Step != StepSetupM4) {
				t.Errorf("wrong PIN reported at %v", err)
			}
		})
	}
}

func TestPINWithoutPINFunc(t *testing.T) {
	ctx := testCtx(t)
	td := newTestDevice(t, func(c *ServerConfig) { c.Mode = ModePIN })
	_, err := Pair(ctx, &PairConfig{Host: hostConfig(), Dial: td.dial, Store: RecordStore{Dir: t.TempDir()}})
	if !errors.Is(err, ErrNeedPIN) {
		t.Fatalf("got %v, want ErrNeedPIN", err)
	}
}

func TestLockdownMode(t *testing.T) {
	ctx := testCtx(t)
	td := newTestDevice(t, func(c *ServerConfig) { c.Mode = ModeLockdown })
	hc := hostConfig()
	hc.Lockdown = true
	store := RecordStore{Dir: t.TempDir()}
	res, err := Pair(ctx, &PairConfig{Host: hc, Dial: td.dial, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if res.Device.Options.AllowsIncomingTunnelConnections {
		t.Error("lockdown handshake allows tunnels")
	}
	rec, _ := store.Load(res.ID)
	tr, _ := td.dial(ctx)
	h := NewClient(tr, &hc)
	defer h.Close()
	h.Handshake(ctx)
	if err := h.Verify(ctx, rec.Identity(vecHostID)); err != nil {
		t.Fatal(err)
	}
	_, err = h.CreateListener(ctx, ListenerRequest{Transport: TransportTCP, Key: h.SharedSecret()})
	var re *RequestError
	if !errors.As(err, &re) || re.Description != errListenerUnsupported {
		t.Errorf("got %v, want %q", err, errListenerUnsupported)
	}
}

func TestConsentAfterDelay(t *testing.T) {
	ctx := testCtx(t)
	// The delay runs on a real clock here; synctest covers the timer in
	// TestConsentAfterTimer.
	td := newTestDevice(t, func(c *ServerConfig) { c.Consent = ConsentAfter(time.Millisecond, true) })
	if _, err := Pair(ctx, &PairConfig{Host: hostConfig(), Dial: td.dial, Store: RecordStore{Dir: t.TempDir()}}); err != nil {
		t.Fatal(err)
	}
}

func TestConsentAfterTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		ok, err := ConsentAfter(time.Hour, false)(context.Background(), "host")
		if ok || err != nil || time.Since(start) != time.Hour {
			t.Errorf("refusal after %v: %v, %v", time.Since(start), ok, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start = time.Now()
		ok, err = ConsentAfter(time.Hour, true)(ctx, "host")
		if ok || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Minute {
			t.Errorf("cancelled wait after %v: %v, %v", time.Since(start), ok, err)
		}
	})
}

// fakeLockdown starts the service by handing out one end of a pipe whose
// other end runs the device role in lockdown mode.
type fakeLockdown struct {
	td      *testDevice
	service string
}

func (f *fakeLockdown) StartService(ctx context.Context, service string) (io.ReadWriteCloser, error) {
	f.service = service
	tr, err := f.td.dial(ctx)
	if err != nil {
		return nil, err
	}
	return tr.(*RPPairing).rw.(io.ReadWriteCloser), nil
}

func TestDialLockdown(t *testing.T) {
	ctx := testCtx(t)
	td := newTestDevice(t, func(c *ServerConfig) { c.Mode = ModeLockdown })
	fl := &fakeLockdown{td: td}
	hc := hostConfig()
	hc.Lockdown = true
	hc.AwaitingConsent = func() { t.Error("consent over lockdown") }
	dial := func(ctx context.Context) (Transport, error) { return DialLockdown(ctx, fl) }
	res, err := Pair(ctx, &PairConfig{Host: hc, Dial: dial, Store: RecordStore{Dir: t.TempDir()}})
	if err != nil || fl.service != LockdownServiceName || res.ID != vecDeviceUDID {
		t.Fatalf("Pair over lockdown: %+v, %v (service %q)", res, err, fl.service)
	}
}

// TestNoLeaks: a full Pair over in-memory conns and over loopback RemoteXPC
// leaves no goroutine and no descriptor behind once the device side ends.
func TestNoLeaks(t *testing.T) {
	testkit.CheckLeaks(t)
	ctx := testCtx(t)
	td := newTestDevice(t, nil)
	if _, err := Pair(ctx, &PairConfig{Host: hostConfig(), Dial: td.dial, Store: RecordStore{Dir: t.TempDir()}}); err != nil {
		t.Fatal(err)
	}
	td.wait()
	dev, err := NewServer(&ServerConfig{Identity: vecDevice, Handshake: vecHandshake})
	if err != nil {
		t.Fatal(err)
	}
	xd := startXPCDevice(t, dev)
	if _, err := Pair(ctx, &PairConfig{Host: hostConfig(), Dial: xd.dial, Store: RecordStore{Dir: t.TempDir()}}); err != nil {
		t.Fatal(err)
	}
}

// TestRPPairingSplitReads reads frames through readers that return one
// byte, half the buffer, or data together with EOF.
func TestRPPairingSplitReads(t *testing.T) {
	env := handshakeRequest(3).tree()
	env["originatedBy"] = originHost
	body, _ := encodeEnvelopeJSON(env)
	frame, _ := AppendFrame(nil, body)
	two := append(append([]byte{}, frame...), frame...)
	readers := map[string]func(io.Reader) io.Reader{
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			tr := NewRPPairing(struct {
				io.Reader
				io.Writer
			}{wrap(bytes.NewReader(two)), io.Discard})
			for i := range 2 {
				got, err := tr.ReadEnvelope(context.Background())
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				m, err := parseMessage(got)
				if err != nil || m.name != reqHandshake || m.seq != 3 {
					t.Fatalf("frame %d: %v, %v", i, m, err)
				}
			}
			if _, err := tr.ReadEnvelope(context.Background()); !errors.Is(err, io.EOF) {
				t.Errorf("after the frames: %v, want EOF", err)
			}
			// A frame cut anywhere is an error, never a short envelope.
			for n := 1; n < len(frame); n++ {
				tr := NewRPPairing(struct {
					io.Reader
					io.Writer
				}{wrap(bytes.NewReader(frame[:n])), io.Discard})
				if _, err := tr.ReadEnvelope(context.Background()); err == nil {
					t.Fatalf("frame cut at %d read", n)
				}
			}
		})
	}
}
