package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

const muxTestUDID = "00008110-00AA11BB22CC33DD"

// muxRig is a simulated iPhone behind our usbmux server on a UNIX socket;
// env points the CLI at it.
type muxRig struct {
	srv *usbmux.Server
	mux *usbmux.Client
	dev *lockdown.Server
	id  uint32
	env map[string]string
	// trust is the simulated user's answer to Pair; a pending answer
	// turns into accept once given (the user taps Trust).
	trust atomic.Int32
}

func (r *muxRig) answerTrust(string) lockdown.TrustAnswer {
	a := lockdown.TrustAnswer(r.trust.Load())
	if a == lockdown.TrustPending {
		r.trust.Store(int32(lockdown.TrustAccept))
	}
	return a
}

func newMuxRig(t *testing.T) *muxRig {
	t.Helper()
	ports := usbmux.NewPortMux(0)
	r := &muxRig{}
	dev, err := lockdown.NewServer(lockdown.ServerConfig{Trust: r.answerTrust, Values: map[string]any{
		"UniqueDeviceID": muxTestUDID,
		"ProductVersion": "17.5",
		"ProductType":    "iPhone15,2",
		"DeviceName":     "Rig iPhone",
		"SerialNumber":   "F2LRIGRIGRIG",
		"UniqueChipID":   uint64(1 << 60),
		"NonVolatileRAM": map[string]any{"boot-args": []byte{0, 1, 2}},
		"BuildDate":      time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}, Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	ports.Handle(lockdown.Port, dev.ServeConn)
	srv := usbmux.NewServer(usbmux.ServerConfig{})
	// Linux usbmuxd reports this UDID without its dash.
	id := srv.AddDevice(usbmux.DeviceEntry{SerialNumber: strings.ReplaceAll(muxTestUDID, "-", ""), ConnectionType: usbmux.ConnectionUSB}, ports)
	dir, err := os.MkdirTemp("", "cli")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "usbmuxd")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		dev.Close()
		srv.Close()
		<-done
		os.RemoveAll(dir)
	})
	r.srv, r.dev, r.id = srv, dev, id
	r.mux = usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: path}})
	r.env = map[string]string{"USBMUXD_SOCKET_ADDRESS": "UNIX:" + path}
	return r
}

func runMux(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestListAndInfo(t *testing.T) {
	r := newMuxRig(t)

	code, out, errs := runMux(t, r.env, "list", "--json")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errs)
	}
	var entries []listEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("list output %q: %v", out, err)
	}
	want := listEntry{UDID: muxTestUDID, DeviceID: r.id, ConnectionType: "USB", ProductType: "iPhone15,2", ProductVersion: "17.5", Name: "Rig iPhone"}
	if len(entries) != 1 || entries[0] != want {
		t.Errorf("list = %+v; want [%+v]", entries, want)
	}
	code, out, _ = runMux(t, r.env, "list")
	if code != 0 || !strings.Contains(out, muxTestUDID) || !strings.Contains(out, "Rig iPhone") {
		t.Errorf("list text: exit %d, %q", code, out)
	}

	// Unpaired, --no-autopair: info says what to run.
	code, _, errs = runMux(t, r.env, "info", "--udid", muxTestUDID, "--no-autopair")
	if code != 1 || !strings.Contains(errs, "no pair record") || !strings.Contains(errs, "iosmux lockdown pair --udid "+muxTestUDID) {
		t.Errorf("info unpaired --no-autopair: exit %d, %q", code, errs)
	}
	// Don't Trust: a non-zero exit that says so.
	r.trust.Store(int32(lockdown.TrustDeny))
	code, _, errs = runMux(t, r.env, "info")
	if code != 1 || !strings.Contains(errs, "Don't Trust") || !strings.Contains(errs, muxTestUDID) {
		t.Errorf("info with Trust denied: exit %d, %q", code, errs)
	}
	code, out, errs = runMux(t, r.env, "info", "--no-session", "--json")
	if code != 0 {
		t.Fatalf("info --no-session: exit %d: %s", code, errs)
	}
	var pre map[string]any
	json.Unmarshal([]byte(out), &pre)
	if pre["ProductVersion"] != "17.5" || pre["SerialNumber"] != nil {
		t.Errorf("values without a session = %v", pre)
	}

	// The user taps Trust: info pairs first (the prompt on stderr, stdout
	// stays JSON), then reads.
	r.trust.Store(int32(lockdown.TrustPending))
	code, out, errs = runMux(t, r.env, "info", "--udid", strings.ToLower(strings.ReplaceAll(muxTestUDID, "-", "")), "--json")
	if code != 0 || !strings.Contains(errs, trustPrompt) || strings.Contains(out, trustPrompt) {
		t.Fatalf("info autopair: exit %d: stdout %q stderr %q", code, out, errs)
	}
	if _, err := lockdown.ReadPairRecord(context.Background(), r.mux, muxTestUDID); err != nil {
		t.Fatalf("usbmuxd holds no record after info paired: %v", err)
	}
	var vals map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&vals); err != nil {
		t.Fatalf("info output %q: %v", out, err)
	}
	checks := map[string]any{
		"SerialNumber":   "F2LRIGRIGRIG",
		"UniqueChipID":   json.Number("1152921504606846976"), // exact, not rounded through float64
		"BuildDate":      "2024-05-01T12:00:00Z",
		"NonVolatileRAM": map[string]any{"boot-args": "AAEC"},
	}
	for k, w := range checks {
		got, _ := json.Marshal(vals[k])
		exp, _ := json.Marshal(w)
		if !bytes.Equal(got, exp) {
			t.Errorf("info %s = %s, want %s", k, got, exp)
		}
	}
	if pk, _ := vals["DevicePublicKey"].(string); pk == "" {
		t.Error("DevicePublicKey missing from info")
	}

	code, out, _ = runMux(t, r.env, "info", "--key", "ProductType")
	if code != 0 || out != "iPhone15,2\n" {
		t.Errorf("info --key ProductType: exit %d, %q", code, out)
	}
	code, out, _ = runMux(t, r.env, "info")
	if code != 0 || !strings.Contains(out, "DevicePublicKey:\n  -----BEGIN RSA PUBLIC KEY-----") || !strings.Contains(out, "NonVolatileRAM:\n  boot-args: AAEC\n") {
		t.Errorf("info text: exit %d:\n%s", code, out)
	}
	code, _, errs = runMux(t, r.env, "info", "--udid", "nope")
	if code != 1 || !strings.Contains(errs, "nope is not attached") {
		t.Errorf("info unknown device: exit %d, %q", code, errs)
	}
	code, _, errs = runMux(t, r.env, "info", "--key", "NoSuchKey")
	if code != 1 || !strings.Contains(errs, "GetValue") || !strings.Contains(errs, "MissingValue") {
		t.Errorf("info missing key: exit %d, %q", code, errs)
	}
}

func TestListNoDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone")
	code, _, errs := runMux(t, nil, "list", "--usbmux-address", "unix://"+path)
	if code != 1 || !strings.Contains(errs, path) {
		t.Errorf("list without usbmuxd: exit %d, %q", code, errs)
	}
	code, _, errs = runMux(t, map[string]string{"USBMUXD_SOCKET_ADDRESS": "udp://x:1"}, "list")
	if code != 1 || !strings.Contains(errs, "USBMUXD_SOCKET_ADDRESS") {
		t.Errorf("list with a bad address: exit %d, %q", code, errs)
	}
	// The flag wins over the environment, PYMOBILEDEVICE3_USBMUX over USBMUXD_SOCKET_ADDRESS.
	code, _, errs = runMux(t, map[string]string{"PYMOBILEDEVICE3_USBMUX": "unix:" + path + "-pmd3", "USBMUXD_SOCKET_ADDRESS": "udp://x:1"}, "list")
	if code != 1 || !strings.Contains(errs, path+"-pmd3") {
		t.Errorf("list with PYMOBILEDEVICE3_USBMUX: exit %d, %q", code, errs)
	}
}
