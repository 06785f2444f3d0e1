package lockdown

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/usbmux"
)

// scriptedTrust answers the Trust dialog from a list, then with the last
// answer for ever, and counts the questions.
type scriptedTrust struct {
	mu      sync.Mutex
	answers []TrustAnswer
	asked   int
}

func (s *scriptedTrust) answer(string) TrustAnswer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	a := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	return a
}

func (s *scriptedTrust) set(a ...TrustAnswer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers, s.asked = a, 0
}

func (s *scriptedTrust) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked
}

func (r *rig) usbDevice() usbmux.DeviceEntry {
	return usbmux.DeviceEntry{DeviceID: r.deviceID, SerialNumber: testUDID, ConnectionType: usbmux.ConnectionUSB}
}

// memStore is a RecordStore in memory.
type memStore struct {
	mu   sync.Mutex
	recs map[string]*PairRecord
	err  error // SaveRecord's answer
}

func (m *memStore) LoadRecord(udid string) (*PairRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.recs[udid]; ok {
		return r, nil
	}
	return nil, fs.ErrNotExist
}

func (m *memStore) SaveRecord(udid string, rec *PairRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if m.recs == nil {
		m.recs = map[string]*PairRecord{}
	}
	m.recs[udid] = rec
	return nil
}

// TestEnsurePaired: a never-paired device is paired (the prompt callback
// runs once, while the dialog shows), a paired one is left alone, one
// that forgot the host is paired again, and --no-autopair says what to run
// instead.
func TestEnsurePaired(t *testing.T) {
	testkit.CheckLeaks(t)
	trust := &scriptedTrust{answers: []TrustAnswer{TrustPending, TrustPending, TrustAccept}}
	r := newRig(t, ServerConfig{Trust: trust.answer})
	ctx := testCtx(t)
	dev := r.usbDevice()

	if _, _, err := EnsurePaired(ctx, r.mux, dev, PairOptions{NoAutopair: true}); !errors.Is(err, ErrNotPaired) ||
		!strings.Contains(err.Error(), "iosmux lockdown pair --udid "+testUDID) || !strings.Contains(err.Error(), "no pair record") {
		t.Fatalf("EnsurePaired --no-autopair on a new device: %v; want ErrNotPaired naming the command", err)
	}
	if n := trust.count(); n != 0 {
		t.Fatalf("--no-autopair asked the Trust dialog %d times", n)
	}

	prompts := 0
	opt := PairOptions{HostName: "h", PollInterval: time.Millisecond, OnPrompt: func() { prompts++ }}
	rec, paired, err := EnsurePaired(ctx, r.mux, dev, opt)
	if err != nil || !paired {
		t.Fatalf("EnsurePaired on a new device = paired %v, %v", paired, err)
	}
	if prompts != 1 || trust.count() != 3 {
		t.Errorf("prompt called %d times, Trust asked %d times; want 1 and 3", prompts, trust.count())
	}
	stored, err := ReadPairRecord(ctx, r.mux, testUDID)
	if err != nil || stored.HostID != rec.HostID {
		t.Fatalf("usbmuxd's record after EnsurePaired: %v, %v", stored, err)
	}

	// Paired: no dialog, same record.
	trust.set(TrustDeny)
	again, paired, err := EnsurePaired(ctx, r.mux, dev, opt)
	if err != nil || paired || again.HostID != rec.HostID || trust.count() != 0 {
		t.Fatalf("EnsurePaired when paired = %v, paired %v, %v; Trust asked %d times", again, paired, err, trust.count())
	}

	// The device forgets the host (Erase All Content, Reset Location &
	// Privacy): the record is refused and a new pairing made.
	if err := r.dial(t).Unpair(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsurePaired(ctx, r.mux, dev, PairOptions{NoAutopair: true}); !errors.Is(err, ErrNotPaired) || !strings.Contains(err.Error(), "no longer trusts") {
		t.Errorf("EnsurePaired --no-autopair after the device forgot: %v", err)
	}
	trust.set(TrustAccept)
	fresh, paired, err := EnsurePaired(ctx, r.mux, dev, opt)
	if err != nil || !paired || fresh.HostID == rec.HostID {
		t.Fatalf("EnsurePaired after the device forgot = %v, paired %v, %v", fresh, paired, err)
	}
	if got := r.dev.HostIDs(); len(got) != 1 || got[0] != fresh.HostID {
		t.Errorf("device hosts = %v, want [%s]", got, fresh.HostID)
	}
}

// TestPairOutcomes: Don't Trust, a locked device and an unanswered dialog
// each come back as a *PairError that errors.Is can tell apart and whose
// message says what to do; nothing is saved.
func TestPairOutcomes(t *testing.T) {
	trust := &scriptedTrust{}
	r := newRig(t, ServerConfig{Trust: trust.answer})
	dev := r.usbDevice()
	tests := []struct {
		name   string
		answer TrustAnswer
		want   error
		text   string
	}{
		{"denied", TrustDeny, ErrUserDeniedPairing, "Don't Trust was tapped"},
		{"locked", TrustLocked, ErrPasswordProtected, "unlock it"},
		{"unanswered", TrustPending, ErrTrustTimeout, "nobody answered the Trust dialog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trust.set(tt.answer)
			// The unanswered dialog's wait ends as a deadline would, once
			// the prompt has shown (key generation under -race takes
			// longer than any fixed short deadline).
			ctx, cancel := context.WithCancelCause(testCtx(t))
			defer cancel(nil)
			prompts := 0
			onPrompt := func() {
				prompts++
				time.AfterFunc(50*time.Millisecond, func() { cancel(context.DeadlineExceeded) })
			}
			_, _, err := EnsurePaired(ctx, r.mux, dev, PairOptions{PollInterval: 10 * time.Millisecond, OnPrompt: onPrompt})
			var pe *PairError
			if !errors.As(err, &pe) || pe.UDID != testUDID || !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("EnsurePaired = %v; want a PairError for %s matching %v saying %q", err, testUDID, tt.want, tt.text)
			}
			if tt.want == ErrTrustTimeout && (prompts != 1 || !errors.Is(err, context.DeadlineExceeded)) {
				t.Errorf("unanswered dialog: %d prompts, err %v; want 1 and DeadlineExceeded", prompts, err)
			}
			if _, err := ReadPairRecord(testCtx(t), r.mux, testUDID); !errors.Is(err, usbmux.ErrNoPairRecord) {
				t.Errorf("a record was saved after %s: %v", tt.name, err)
			}
			if len(r.dev.HostIDs()) != 0 {
				t.Errorf("the device trusts %v after %s", r.dev.HostIDs(), tt.name)
			}
		})
	}
}

// TestEnsurePairedStore: a record kept in the store (and lost by usbmuxd)
// is given back to usbmuxd without a new Trust dialog; a new pairing is
// saved in the store; a store that cannot save fails the call but leaves
// usbmuxd's record, so the next call succeeds without a dialog.
func TestEnsurePairedStore(t *testing.T) {
	trust := &scriptedTrust{answers: []TrustAnswer{TrustAccept}}
	r := newRig(t, ServerConfig{Trust: trust.answer})
	ctx := testCtx(t)
	dev := r.usbDevice()
	st := &memStore{}

	rec, paired, err := EnsurePaired(ctx, r.mux, dev, PairOptions{Store: st})
	if err != nil || !paired {
		t.Fatal(paired, err)
	}
	if got, err := st.LoadRecord(testUDID); err != nil || got.HostID != rec.HostID {
		t.Fatalf("store after pairing: %v, %v", got, err)
	}
	if err := r.mux.DeletePairRecord(ctx, testUDID); err != nil {
		t.Fatal(err)
	}
	trust.set(TrustDeny)
	got, paired, err := EnsurePaired(ctx, r.mux, dev, PairOptions{Store: st})
	if err != nil || paired || got.HostID != rec.HostID || trust.count() != 0 {
		t.Fatalf("EnsurePaired from the store = %v, paired %v, %v, Trust asked %d", got, paired, err, trust.count())
	}
	if back, err := ReadPairRecord(ctx, r.mux, testUDID); err != nil || back.HostID != rec.HostID {
		t.Errorf("usbmuxd did not get the stored record back: %v, %v", back, err)
	}

	// A store that cannot save.
	if err := UnpairUsbmux(ctx, r.mux, dev); err != nil {
		t.Fatal(err)
	}
	st = &memStore{err: errors.New("disk full")}
	trust.set(TrustAccept)
	if _, _, err := EnsurePaired(ctx, r.mux, dev, PairOptions{Store: st}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("EnsurePaired with a failing store: %v", err)
	}
	trust.set(TrustDeny)
	if _, paired, err := EnsurePaired(ctx, r.mux, dev, PairOptions{}); err != nil || paired {
		t.Errorf("after a failed store save: paired %v, %v; want usbmuxd's record accepted", paired, err)
	}
}

// TestValidateUnpair is idevicepair validate and unpair.
func TestValidateUnpair(t *testing.T) {
	r := newRig(t, ServerConfig{})
	ctx := testCtx(t)
	dev := r.usbDevice()
	if _, err := ValidateUsbmux(ctx, r.mux, dev); !errors.Is(err, ErrNotPaired) {
		t.Fatalf("validate before pairing: %v", err)
	}
	if err := UnpairUsbmux(ctx, r.mux, dev); !errors.Is(err, usbmux.ErrNoPairRecord) {
		t.Fatalf("unpair before pairing: %v", err)
	}
	rec := r.pair(t)
	got, err := ValidateUsbmux(ctx, r.mux, dev)
	if err != nil || got.HostID != rec.HostID {
		t.Fatalf("validate after pairing = %v, %v", got, err)
	}
	if err := UnpairUsbmux(ctx, r.mux, dev); err != nil {
		t.Fatal(err)
	}
	if ids := r.dev.HostIDs(); len(ids) != 0 {
		t.Errorf("device still trusts %v after unpair", ids)
	}
	if _, err := ReadPairRecord(ctx, r.mux, testUDID); !errors.Is(err, usbmux.ErrNoPairRecord) {
		t.Errorf("usbmuxd record after unpair: %v", err)
	}
	if _, err := ValidateUsbmux(ctx, r.mux, dev); !errors.Is(err, ErrNotPaired) {
		t.Errorf("validate after unpair: %v", err)
	}

	// A device that forgot us on its own: validate says so, unpair still
	// cleans up usbmuxd.
	rec = r.pair(t)
	if err := r.dial(t).Unpair(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := ValidateUsbmux(ctx, r.mux, dev); !errors.Is(err, ErrNotPaired) || !strings.Contains(err.Error(), "no longer trusts") {
		t.Errorf("validate of a forgotten pairing: %v", err)
	}
	if err := UnpairUsbmux(ctx, r.mux, dev); err != nil {
		t.Errorf("unpair of a forgotten pairing: %v", err)
	}
	if _, err := ReadPairRecord(ctx, r.mux, testUDID); !errors.Is(err, usbmux.ErrNoPairRecord) {
		t.Errorf("usbmuxd record after unpairing a forgotten pairing: %v", err)
	}
}

// TestUsbmuxServices starts a service with a record in hand, once per
// call, each on a session of its own.
func TestUsbmuxServices(t *testing.T) {
	r := newRig(t, ServerConfig{})
	ctx := testCtx(t)
	s := &UsbmuxServices{Mux: r.mux, Device: r.usbDevice(), Record: r.pair(t)}
	for range 2 {
		conn, err := s.StartService(ctx, CoreDeviceProxy)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(conn, b); err != nil || string(b) != "ping" {
			t.Fatalf("echo through the service = %q, %v", b, err)
		}
		conn.Close()
	}
	if _, err := s.StartService(ctx, "com.apple.nope"); !errors.Is(err, ErrInvalidService) {
		t.Errorf("unknown service: %v", err)
	}
}
