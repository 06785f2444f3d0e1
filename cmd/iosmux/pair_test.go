package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/xpc"
	"howett.net/plist"
)

const testUDID = "00008110-001A2B3C4D5E6F70"

func testDeviceConfig(mode pairing.Mode) *pairing.ServerConfig {
	seed := bytes.Repeat([]byte{0x21}, 32)
	return &pairing.ServerConfig{
		Identity: pairing.DeviceIdentity{
			Identifier: "D3A1F5C2-7B8E-4F60-9A1B-2C3D4E5F6071", Seed: seed, AltIRK: make([]byte, 16),
			BTAddr: "AA:BB:CC:DD:EE:FF", MAC: make([]byte, 6), Model: "iPhone14,2", Name: "Test iPhone",
			SerialNumber: "F2LXXXXXXXXX", UDID: testUDID,
		},
		Handshake: pairing.HandshakeInfo{
			WireProtocolVersion: 26, MinimumSupportedWireProtocolVersion: 8,
			Options: pairing.DeviceOptions{AllowsPairSetup: true, AllowsIncomingTunnelConnections: true},
			Device:  pairing.PeerDeviceInfo{Identifier: testUDID, UDID: testUDID, Name: "Test iPhone", Model: "iPhone14,2"},
		},
		Mode: mode,
	}
}

// serveDevice runs the device role on a loopback listener, RPPairing or
// RemoteXPC, until the test ends.
func serveDevice(t *testing.T, cfg *pairing.ServerConfig, overXPC bool) int {
	t.Helper()
	dev, err := pairing.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if overXPC {
					dev.ServeXPC(ctx, nc, nil)
					return
				}
				tr := pairing.NewRPPairing(nc)
				dev.Serve(ctx, tr)
				tr.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); cancel(); wg.Wait() })
	return ln.Addr().(*net.TCPAddr).Port
}

func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestPairRemotePairingPIN(t *testing.T) {
	cfg := testDeviceConfig(pairing.ModePIN)
	cfg.PIN = "123456"
	port := strconv.Itoa(serveDevice(t, cfg, false))
	dir := t.TempDir()
	env := map[string]string{"IOSMUX_PAIR_RECORDS": dir}

	code, _, errs := runCLI(t, env, "pair", "--remotepairing", "127.0.0.1", port, "--pin", "000001")
	if code != 1 || !strings.Contains(errs, "wrong PIN") || !strings.Contains(errs, "pair-setup M4") {
		t.Errorf("wrong PIN: exit %d, stderr %q", code, errs)
	}

	code, out, errs := runCLI(t, env, "pair", "--remotepairing", "127.0.0.1", port, "--pin", "123456", "--udid", "appletv", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res pairJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	wantPath := filepath.Join(dir, "remote_appletv.plist")
	if res.Identifier != "appletv" || res.AlreadyPaired || res.Record != wantPath || !res.UnlockKey {
		t.Errorf("result %+v", res)
	}
	st, err := os.Stat(wantPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record: %v %v", st, err)
	}

	code, out, errs = runCLI(t, env, "pair", "--remotepairing", "127.0.0.1", port, "--udid", "appletv")
	if code != 0 || !strings.Contains(out, "Already paired") || !strings.Contains(out, wantPath) {
		t.Errorf("second run: exit %d, %q %q", code, out, errs)
	}
}

func TestPairRSDTrust(t *testing.T) {
	svcPort := serveDevice(t, testDeviceConfig(pairing.ModeTrust), true)
	props := rsd.ExampleProperties()
	props.Set("UniqueDeviceID", xpc.String(testUDID))
	srv, err := rsd.NewServer(rsd.ServerConfig{Properties: props, Services: []rsd.Service{{
		Name: pairing.TunnelServiceName, Port: uint16(svcPort), Entitlement: "com.apple.dt.coredevice.tunnelservice.client",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	rsdPort := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	dir := t.TempDir()
	env := map[string]string{"IOSMUX_PAIR_RECORDS": dir}
	code, _, errs := runCLI(t, env, "pair", "--rsd", "127.0.0.1", rsdPort, "--state-dir", t.TempDir(), "--udid", "00008110-000000000000FFFF")
	if code != 1 || !strings.Contains(errs, "not 00008110-000000000000FFFF") {
		t.Errorf("wrong --udid: exit %d, %q", code, errs)
	}
	code, out, errs := runCLI(t, env, "pair", "--rsd", "127.0.0.1", rsdPort, "--state-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	rec := filepath.Join(dir, "remote_"+testUDID+".plist")
	if !strings.Contains(out, "Tap Trust on the iPhone and enter its passcode") || !strings.Contains(out, "Record saved to "+rec) {
		t.Errorf("output %q", out)
	}

	code, out, _ = runCLI(t, env, "pair", "list", "--json")
	var list []pairListEntry
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Identifier != testUDID || list[0].PeerName != "Test iPhone" {
		t.Errorf("list: %d %q", code, out)
	}
	if strings.Contains(out, "private") {
		t.Errorf("list shows key material: %s", out)
	}
	code, out, _ = runCLI(t, env, "pair", "list")
	if code != 0 || !strings.Contains(out, testUDID) || !strings.Contains(out, "Test iPhone (iPhone14,2)") {
		t.Errorf("list text: %d %q", code, out)
	}
	if code, _, errs = runCLI(t, env, "pair", "forget", testUDID); code != 0 {
		t.Errorf("forget: %d %s", code, errs)
	}
	if code, _, errs = runCLI(t, env, "pair", "forget", testUDID); code != 1 || !strings.Contains(errs, "no pair record") {
		t.Errorf("forget again: %d %s", code, errs)
	}
}

func TestPairDontTrust(t *testing.T) {
	cfg := testDeviceConfig(pairing.ModeTrust)
	cfg.Consent = func(context.Context, string) (bool, error) { return false, nil }
	port := strconv.Itoa(serveDevice(t, cfg, false))
	dir := t.TempDir()
	code, out, errs := runCLI(t, map[string]string{"IOSMUX_PAIR_RECORDS": dir}, "pair", "--remotepairing", "127.0.0.1", port)
	if code != 1 || !strings.Contains(errs, "Don't Trust") || !strings.Contains(errs, testUDID) {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "Tap Trust on the iPhone") {
		t.Errorf("no prompt: %q", out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files written: %v", ents)
	}
}

func TestPairUsage(t *testing.T) {
	for _, args := range [][]string{
		{"pair", "extra"},
		{"pair", "--rsd", "h"},
		{"pair", "--rsd", "h", "1", "--remotepairing", "h", "2"},
		{"pair", "forget"},
		{"pair", "import"},
	} {
		if code, _, _ := runCLI(t, nil, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestPairRecordsDir(t *testing.T) {
	a := testApp(io.Discard, map[string]string{"HOME": "/h"})
	if d, _ := pairRecordsDir(a, ""); d != "/h/.pymobiledevice3" {
		t.Errorf("default: %s", d)
	}
	a = testApp(io.Discard, map[string]string{"HOME": "/h", "IOSMUX_PAIR_RECORDS": "/env"})
	if d, _ := pairRecordsDir(a, ""); d != "/env" {
		t.Errorf("env: %s", d)
	}
	if d, _ := pairRecordsDir(a, "/flag"); d != "/flag" {
		t.Errorf("flag: %s", d)
	}
	a = testApp(io.Discard, map[string]string{"HOME": "/root", "SUDO_USER": "root"})
	if d, _ := pairRecordsDir(a, ""); d != "/root/.pymobiledevice3" {
		t.Errorf("sudo: %s", d)
	}
}

func TestPairImportGoIOS(t *testing.T) {
	goios := t.TempDir()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	self := pairing.GoIOSIdentity{Identifier: "6F1C0C3E-2B0A-4D7B-9C43-0F5E5B8B9A11", IRK: make([]byte, 16),
		PrivateKey: key.Seed(), PublicKey: key.Public().(ed25519.PublicKey)}
	b, err := plist.Marshal(self, plist.BinaryFormat)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(goios, "selfIdentity.plist"), b, 0o644)
	dir := t.TempDir()
	env := map[string]string{"IOSMUX_PAIR_RECORDS": dir}
	if code, _, errs := runCLI(t, env, "pair", "import", "--go-ios", goios); code != 1 || !strings.Contains(errs, "no peers") {
		t.Errorf("without UDIDs: %d %q", code, errs)
	}
	code, out, errs := runCLI(t, env, "pair", "import", "--go-ios", goios, testUDID)
	if code != 0 || !strings.Contains(out, "Imported "+testUDID) {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	rec, err := pairing.RecordStore{Dir: dir}.Load(testUDID)
	if err != nil || rec.HostIdentifier != self.Identifier || !bytes.Equal(rec.PrivateKey, key.Seed()) {
		t.Errorf("record %v, %v", rec, err)
	}
}

// TestPairLockdownUSB pairs over USB: usbmuxd, a lockdown session with the
// classic pair record, then the RemotePairing lockdown service, which needs
// no Trust prompt.
func TestPairLockdownUSB(t *testing.T) {
	pdev, err := pairing.NewServer(testDeviceConfig(pairing.ModeLockdown))
	if err != nil {
		t.Fatal(err)
	}
	ports := usbmux.NewPortMux(0)
	ld, err := lockdown.NewServer(lockdown.ServerConfig{
		Values: map[string]any{"UniqueDeviceID": testUDID, "ProductVersion": "18.2", "ProductType": "iPhone14,2", "DeviceName": "Test iPhone"},
		Ports:  ports,
		Services: map[string]lockdown.ServiceHandler{pairing.LockdownServiceName: {SSL: true, Serve: func(conn net.Conn) {
			pdev.Serve(context.Background(), pairing.NewRPPairing(conn))
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ports.Handle(lockdown.Port, ld.ServeConn)
	srv := usbmux.NewServer(usbmux.ServerConfig{})
	id := srv.AddDevice(usbmux.DeviceEntry{SerialNumber: testUDID, ConnectionType: usbmux.ConnectionUSB}, ports)
	sockDir, err := os.MkdirTemp("", "pair")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "usbmuxd")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() { ld.Close(); srv.Close(); <-done; os.RemoveAll(sockDir) }()
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: sock}})
	env := map[string]string{"USBMUXD_SOCKET_ADDRESS": "UNIX:" + sock, "IOSMUX_PAIR_RECORDS": t.TempDir()}

	code, _, errs := runCLI(t, env, "pair", "--no-autopair")
	if code != 1 || !strings.Contains(errs, "iosmux lockdown pair --udid "+testUDID) {
		t.Errorf("--no-autopair without a lockdown pairing: exit %d, %q", code, errs)
	}
	// The classic pairing is made first (the device trusts at once), then
	// RemotePairing over the lockdown service.
	code, out, errs := runCLI(t, env, "pair", "--udid", testUDID)
	if code != 0 || !strings.Contains(out, "Paired with Test iPhone") || strings.Contains(out, "Tap Trust") {
		t.Fatalf("exit %d, %q, %q", code, out, errs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := lockdown.ValidateUsbmux(ctx, mux, usbmux.DeviceEntry{DeviceID: id, SerialNumber: testUDID}); err != nil {
		t.Errorf("the classic pairing 'pair' made does not validate: %v", err)
	}
	code, out, errs = runCLI(t, env, "pair")
	if code != 0 || !strings.Contains(out, "Already paired") {
		t.Errorf("second run: exit %d, %q, %q", code, out, errs)
	}
}
