package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
	"github.com/iosmux/iosmux/usbmux"
)

// twoDevices is usbmuxd with two devices attached (no lockdown behind
// them: the picker still lists them, with the error).
func twoDevices(t *testing.T) *usbmux.Client {
	t.Helper()
	srv := usbmux.NewServer(usbmux.ServerConfig{})
	srv.AddDevice(usbmux.DeviceEntry{SerialNumber: "00008110-000000000000000A", ConnectionType: usbmux.ConnectionUSB}, usbmux.NewPortMux(0))
	srv.AddDevice(usbmux.DeviceEntry{SerialNumber: "00008110-000000000000000B", ConnectionType: usbmux.ConnectionNetwork}, usbmux.NewPortMux(0))
	dir, err := os.MkdirTemp("", "pick")
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
	t.Cleanup(func() { srv.Close(); <-done; os.RemoveAll(dir) })
	return usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: path}})
}

// TestDevicePicker: with several devices and no --udid, a terminal gets a
// numbered list and the choice is taken; without one the error lists the
// UDIDs and the flag.
func TestDevicePicker(t *testing.T) {
	mux := twoDevices(t)
	ctx := context.Background()

	var screen bytes.Buffer
	a := testApp(io.Discard, nil)
	a.stderr = &screen
	a.terminal = func(any) bool { return true }
	a.stdin = strings.NewReader("7\n2\n")
	d, err := a.findDevice(ctx, mux, "")
	if err != nil || d.UDID() != "00008110-000000000000000B" {
		t.Fatalf("picked %s, %v; want the second device", d.UDID(), err)
	}
	for _, want := range []string{"2 devices attached", "1) 00008110-000000000000000A", "2) 00008110-000000000000000B", "Network", "Choose one [1-2]"} {
		if !strings.Contains(screen.String(), want) {
			t.Errorf("picker screen lacks %q:\n%s", want, screen.String())
		}
	}

	a = testApp(io.Discard, nil)
	a.stdin = strings.NewReader("1\n")
	_, err = a.findDevice(ctx, mux, "")
	if err == nil || !strings.Contains(err.Error(), "00008110-000000000000000A, 00008110-000000000000000B") || !strings.Contains(err.Error(), "--udid") {
		t.Errorf("without a terminal: %v; want the UDIDs and --udid", err)
	}
	if d, err := a.findDevice(ctx, mux, "00008110000000000000000a"); err != nil || d.UDID() != "00008110-000000000000000A" {
		t.Errorf("--udid: %s, %v", d.UDID(), err)
	}
}

// TestRSDInfoTunnel: --tunnel UDID asks tunneld's pmd3 API (--tunneld or
// IOSMUX_TUNNELD) where the device's RSD is, as pymobiledevice3 does.
func TestRSDInfoTunnel(t *testing.T) {
	srv, err := rsd.NewServer(rsd.ServerConfig{Properties: rsd.ExampleProperties(), Services: rsd.ExampleServices()})
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
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	reg := rsdapitest.New(rsdapi.Tunnel{UDID: "00008110-000000000000000A", Key: "k", Address: "127.0.0.1", RSDPort: port})
	api := httptest.NewServer(rsdapi.New(rsdapi.Config{Registry: reg}).PMD3Handler())
	defer api.Close()
	apiAddr := strings.TrimPrefix(api.URL, "http://")
	state := t.TempDir()

	code, out, errs := runChecked(t, nil, "rsd-info", "--tunnel", "00008110000000000000000a", "--tunneld", apiAddr, "--state-dir", state)
	if code != 0 || !strings.Contains(out, srv.UUID().String()) {
		t.Fatalf("--tunnel: exit %d, %q %q", code, out, errs)
	}
	env := map[string]string{"IOSMUX_TUNNELD": apiAddr}
	if code, out, errs := runChecked(t, env, "rsd-info", "--tunnel", "", "--state-dir", state, "--json"); code != 0 || !strings.Contains(out, srv.UUID().String()) {
		t.Errorf(`--tunnel "" with one device, IOSMUX_TUNNELD: exit %d, %q %q`, code, out, errs)
	}
	code, _, errs = runChecked(t, env, "rsd-info", "--tunnel", "00008110-0000000000000FFF", "--state-dir", state)
	if code != 1 || !strings.Contains(errs, "no tunnel") || !strings.Contains(errs, "00008110-0000000000000FFF") {
		t.Errorf("unknown device: exit %d, %q", code, errs)
	}
	reg.Add(rsdapi.Tunnel{UDID: "00008110-000000000000000B", Key: "k2", Address: "127.0.0.1", RSDPort: port})
	code, _, errs = runChecked(t, env, "rsd-info", "--tunnel", "", "--state-dir", state)
	if code != 1 || !strings.Contains(errs, "00008110-000000000000000A, 00008110-000000000000000B") || !strings.Contains(errs, "--tunnel") {
		t.Errorf("two devices, no terminal: exit %d, %q", code, errs)
	}
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t))
	code, _, errs = runChecked(t, nil, "rsd-info", "--tunnel", "U", "--tunneld", dead, "--state-dir", state)
	if code != 1 || !strings.Contains(errs, "is tunneld running?") {
		t.Errorf("no tunneld: exit %d, %q", code, errs)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNoDeviceNamesTheFix: no device at all, or not the one asked for,
// says what to do.
func TestNoDeviceNamesTheFix(t *testing.T) {
	srv := usbmux.NewServer(usbmux.ServerConfig{})
	dir := t.TempDir()
	path := filepath.Join(dir, "usbmuxd")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()
	mux := usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: path}})
	a := testApp(io.Discard, nil)
	if _, err := a.findDevice(context.Background(), mux, ""); err == nil || !strings.Contains(err.Error(), "plug the iPhone in") || !strings.Contains(err.Error(), "iosmux sim") {
		t.Errorf("no device: %v", err)
	}
	if _, err := a.findDevice(context.Background(), mux, "00008110-000000000000000C"); err == nil || !strings.Contains(err.Error(), "'iosmux list'") {
		t.Errorf("absent device: %v", err)
	}
}
