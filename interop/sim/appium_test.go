package sim_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/sim"
)

// node runs one of this folder's scripts with the interop module's
// node_modules and decodes its JSON output into v.
func node(t *testing.T, env []string, v any, script string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"sim/" + script}, args...)...)
	cmd.Dir = testenv.ModuleDir()
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node %s: %v\n%s", script, err, stderr)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("node %s output %q: %v", script, out, err)
	}
}

type appiumService struct {
	ServiceName string `json:"serviceName"`
	Port        string `json:"port"`
}

func serviceNames(list []appiumService) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.ServiceName)
	}
	return out
}

// TestAppium: appium-ios-remotexpc's usbmux client lists the simulated
// devices; its RSD client reads the untrusted RSD, and, through a tunnel
// (CoreDeviceProxy, our host side, a loopback forwarder), the trusted RSD.
func TestAppium(t *testing.T) {
	f := startFleet(t, sim.FleetConfig{Count: 3, Profile: sim.MustProfile("18.2"), Loopback: true})

	var devs []struct {
		DeviceID       int    `json:"deviceID"`
		SerialNumber   string `json:"serialNumber"`
		ConnectionType string `json:"connectionType"`
	}
	node(t, []string{"USBMUXD_SOCKET_ADDRESS=" + f.UsbmuxSocket()}, &devs, "appium_usbmux.mjs")
	var serials []string
	for _, d := range devs {
		serials = append(serials, d.SerialNumber)
		if d.ConnectionType != "USB" || d.DeviceID == 0 {
			t.Errorf("appium device %+v", d)
		}
	}
	slices.Sort(serials)
	if want := udids(f); !slices.Equal(serials, want) {
		t.Errorf("appium lists %q, want %q", serials, want)
	}

	d := f.Devices()[1]
	host, port, _ := net.SplitHostPort(d.Endpoints().UntrustedRSD)
	var untrusted []appiumService
	node(t, nil, &untrusted, "appium_rsd.mjs", d.UDID(), host, port)
	names := serviceNames(untrusted)
	// The three services the simulator serves there (it lists no others).
	if len(untrusted) != 3 || !slices.Contains(names, pairing.TunnelServiceName) || !slices.Contains(names, sim.LockdownUntrusted) ||
		!slices.Contains(names, "com.apple.mobile.insecure_notification_proxy.shim.remote") {
		t.Errorf("appium read the untrusted RSD as %v", untrusted)
	}

	rsdAddr, _, _ := hostTunnel(t, f, d)
	host, port, _ = net.SplitHostPort(rsdAddr)
	var trusted []appiumService
	node(t, nil, &trusted, "appium_rsd.mjs", d.UDID(), host, port)
	names = serviceNames(trusted)
	for _, want := range []string{sim.LockdownTrusted, sim.EchoService, sim.SinkService, sim.SourceService,
		"com.apple.mobile.mobile_image_mounter.shim.remote", "com.apple.amfi.lockdown.shim.remote",
		"com.apple.syslog_relay.shim.remote", "com.apple.os_trace_relay.shim.remote", "com.apple.crashreportmover.shim.remote"} {
		if !slices.Contains(names, want) {
			t.Errorf("appium's trusted RSD listing lacks %s: %v", want, names)
		}
	}
	for _, s := range trusted {
		if s.ServiceName == sim.EchoService && s.Port != strconv.Itoa(int(d.TrustedService(sim.EchoService))) {
			t.Errorf("appium read echo on port %s, device serves %d", s.Port, d.TrustedService(sim.EchoService))
		}
	}
}
