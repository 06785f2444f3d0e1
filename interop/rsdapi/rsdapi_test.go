// Package rsdapi_test checks iosmux's tunnel APIs against the clients that
// read them: go-ios v1.3.2's agent client, appium-ios-remotexpc's registry
// client, and a reader of pymobiledevice3's JSON written from
// docs/protocols/tunneld-api.md. The servers run on loopback over a fake
// registry.
package rsdapi_test

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
)

// serve starts h on 127.0.0.1 and returns the port.
func serve(t *testing.T, h http.Handler) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rsdapi.NewHTTPServer("", h, nil)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port
}

// registry: two USB devices (one reported by a Linux usbmuxd without its
// dash) with a second, USB-NCM tunnel for device 0.
func registry() *rsdapitest.Registry {
	a, b := rsdapitest.Sample(0), rsdapitest.Sample(1)
	b.SerialNumber = "000080300000000000000001"
	ncm := a
	ncm.Key, ncm.Interface, ncm.Address, ncm.RSDPort, ncm.Path = "fe80::1%enx1", "tun9", "fd99::1", 60000, rsdapi.PathUSBNCM
	return rsdapitest.New(a, b, ncm)
}

func node(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("node", append([]string{filepath.Join("rsdapi", script)}, args...)...)
	cmd.Dir = testenv.ModuleDir()
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir(), "HOME="+t.TempDir())
	var stderr []byte
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr)
	}
	return out
}

func TestPMD3Reader(t *testing.T) {
	reg := registry()
	reg.Pending(rsdapitest.Sample(5))
	port := serve(t, rsdapi.New(rsdapi.Config{Registry: reg}).PMD3Handler())
	var got struct {
		All          map[string][][]any
		First        map[string]string
		Hello        string
		Start        []any
		StartUnknown []any
	}
	if err := json.Unmarshal(node(t, "pmd3_reader.mjs", strconv.Itoa(port), "00008030-0000000000000005"), &got); err != nil {
		t.Fatal(err)
	}
	wantAll := map[string][][]any{
		"00008030-0000000000000000": {
			{"fd00::0:1", 50000.0, "usbmux-00008030-0000000000000000-USB"},
			{"fd99::1", 60000.0, "fe80::1%enx1"},
		},
		"00008030-0000000000000001": {{"fd00::1:1", 50001.0, "usbmux-00008030-0000000000000001-USB"}},
	}
	if !reflect.DeepEqual(got.All, wantAll) {
		t.Errorf("all entries = %v, want %v", got.All, wantAll)
	}
	wantFirst := map[string]string{"00008030-0000000000000000": "[fd00::0:1]:50000", "00008030-0000000000000001": "[fd00::1:1]:50001"}
	if !reflect.DeepEqual(got.First, wantFirst) {
		t.Errorf("first entries = %v, want %v", got.First, wantFirst)
	}
	if got.Hello != "Hello, I'm alive" {
		t.Errorf("hello = %q", got.Hello)
	}
	if want := []any{"utun5", 50005.0, "fd00::5:1"}; !reflect.DeepEqual(got.Start, want) {
		t.Errorf("start-tunnel = %v, want %v", got.Start, want)
	}
	if want := []any{501.0, "DeviceNotFoundError"}; !reflect.DeepEqual(got.StartUnknown, want) {
		t.Errorf("start-tunnel unknown = %v, want %v", got.StartUnknown, want)
	}
}

// TestGoIOSAgentClient runs go-ios v1.3.2's agent client (ios/tunnel) from
// its own module (see goiosclient/go.mod) against our go-ios API.
func TestGoIOSAgentClient(t *testing.T) {
	reg := registry()
	port := serve(t, rsdapi.New(rsdapi.Config{Registry: reg}).GoIOSHandler())

	bin := filepath.Join(t.TempDir(), "goiosclient")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testenv.ModuleDir(), "rsdapi", "goiosclient")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build go-ios client: %v\n%s", err, out)
	}
	// go-ios asks by the serial usbmuxd gave it; the dashed form also finds
	// the undashed serial of device 1.
	cmd := exec.Command(bin, "00008030-0000000000000001", "00008030-0000000000000000")
	cmd.Env = append(os.Environ(), "GO_IOS_AGENT_HOST=127.0.0.1", "GO_IOS_AGENT_PORT="+strconv.Itoa(port))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go-ios client: %v", err)
	}
	type goTunnel struct {
		Address          string `json:"address"`
		RsdPort          int    `json:"rsdPort"`
		Udid             string `json:"udid"`
		UserspaceTUN     bool   `json:"userspaceTun"`
		UserspaceTUNPort int    `json:"userspaceTunPort"`
	}
	var got struct {
		Running, Ready        bool
		List                  []goTunnel
		ListErr               string
		One                   goTunnel
		OneErr                string
		NotFound, StopAgainNF bool
		StopErr, CloseErr     string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := []goTunnel{
		{Address: "fd00::0:1", RsdPort: 50000, Udid: "00008030-0000000000000000"},
		{Address: "fd00::1:1", RsdPort: 50001, Udid: "000080300000000000000001"},
	}
	if !got.Running || !got.Ready {
		t.Errorf("IsAgentRunning = %v, WaitUntilAgentReady = %v", got.Running, got.Ready)
	}
	if got.ListErr != "" || !reflect.DeepEqual(got.List, want) {
		t.Errorf("ListRunningTunnels = %+v, %q; want %+v", got.List, got.ListErr, want)
	}
	if got.OneErr != "" || got.One != want[1] {
		t.Errorf("TunnelInfoForDevice = %+v, %q", got.One, got.OneErr)
	}
	if !got.NotFound {
		t.Error("unknown device did not give ErrTunnelNotFound")
	}
	if got.StopErr != "" || !got.StopAgainNF {
		t.Errorf("StopTunnelForDevice = %q, second stop not-found = %v", got.StopErr, got.StopAgainNF)
	}
	if got.CloseErr != "" {
		t.Errorf("CloseAgent: %s", got.CloseErr)
	}
	c := reg.Calls()
	if len(c.Canceled) != 1 || c.Canceled[0] != "00008030-0000000000000000" || c.Shutdowns != 1 {
		t.Errorf("registry calls = %+v, want one cancel of device 0 and one shutdown", c)
	}
}

func TestAppiumRegistryClient(t *testing.T) {
	port := serve(t, rsdapi.New(rsdapi.Config{Registry: registry()}).AppiumHandler())
	var got struct {
		Devices         []string
		All             [][]any
		Metadata        map[string]any
		ByUdid          map[string]any
		ByDevice        *string
		Connection      map[string]any
		Missing         any
		HasMissing      bool
		LongPollMissing any
		Endpoint        map[string]any
	}
	out := node(t, "appium_client.mjs", strconv.Itoa(port), "00008030-0000000000000000", "2")
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := []string{"00008030-0000000000000000", "000080300000000000000001"}; !reflect.DeepEqual(got.Devices, want) {
		t.Errorf("devices = %v, want %v", got.Devices, want)
	}
	svc := []any{"com.apple.mobile.lockdown.remote.trusted"}
	wantAll := [][]any{
		{"00008030-0000000000000000", "fd00::0:1", 50000.0, 1.0, svc},
		{"000080300000000000000001", "fd00::1:1", 50001.0, 2.0, svc},
	}
	if !reflect.DeepEqual(got.All, wantAll) {
		t.Errorf("all = %v, want %v", got.All, wantAll)
	}
	if got.Metadata["totalTunnels"] != 2.0 || got.Metadata["activeTunnels"] != 2.0 {
		t.Errorf("metadata = %v", got.Metadata)
	}
	if got.ByUdid["address"] != "fd00::0:1" || got.ByUdid["rsdPort"] != 50000.0 || got.ByUdid["status"] != "OK" || got.ByUdid["connectionType"] != "USB" {
		t.Errorf("by udid = %v", got.ByUdid)
	}
	if got.ByDevice == nil || *got.ByDevice != "000080300000000000000001" {
		t.Errorf("by device id = %v", got.ByDevice)
	}
	wantConn := map[string]any{"host": "fd00::0:1", "port": 50000.0, "udid": "00008030-0000000000000000"}
	if !reflect.DeepEqual(got.Connection, wantConn) {
		t.Errorf("connection = %v, want %v", got.Connection, wantConn)
	}
	if got.Missing != nil || got.HasMissing || got.LongPollMissing != nil {
		t.Errorf("missing device found: %v %v %v", got.Missing, got.HasMissing, got.LongPollMissing)
	}
	if !reflect.DeepEqual(got.Endpoint, wantConn) {
		t.Errorf("getTunnelForDevice = %v, want %v", got.Endpoint, wantConn)
	}
}
