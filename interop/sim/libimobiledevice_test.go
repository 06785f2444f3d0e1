package sim_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/sim"
)

// idevice runs a libimobiledevice tool against the fleet's usbmuxd
// (USBMUXD_SOCKET_ADDRESS=UNIX:<path>, libusbmuxd's form) in a private
// mount namespace whose /var/lib and HOME are scratch, so nothing it might
// write reaches this machine.
func idevice(t *testing.T, f *sim.Fleet, tool string, args ...string) (string, string, error) {
	t.Helper()
	for _, bin := range []string{tool, "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed (scripts/setup.sh installs libimobiledevice-utils): %v", bin, err)
		}
	}
	scratch := t.TempDir()
	ctx, cancel := context.WithTimeout(testCtx(t), 60e9)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private",
		"sh", "-c", `mount --bind "$0" /var/lib && exec "$@"`, scratch, tool)
	cmd.Args = append(cmd.Args, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS=UNIX:"+f.UsbmuxSocket(), "HOME="+scratch)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// TestLibimobiledevice: idevice_id lists every simulated device;
// idevicepair pairs through the simulated usbmuxd (the device's Trust dialog
// accepts) and ideviceinfo reads values that only a TLS session shows.
func TestLibimobiledevice(t *testing.T) {
	const n = 4
	f := startFleet(t, sim.FleetConfig{Count: n, Profile: sim.MustProfile("17.4")})

	out, errs, err := idevice(t, f, "idevice_id", "-l")
	if err != nil {
		t.Fatalf("idevice_id -l: %v\n%s", err, errs)
	}
	got := strings.Fields(out)
	slices.Sort(got)
	if want := udids(f); !slices.Equal(got, want) {
		t.Fatalf("idevice_id -l = %q, want %q", got, want)
	}

	for _, d := range f.Devices()[:2] {
		id := d.Identity()
		out, errs, err := idevice(t, f, "idevicepair", "-u", id.UDID, "pair")
		if err != nil || !strings.Contains(out, "SUCCESS: Paired with device "+id.UDID) {
			t.Fatalf("idevicepair pair: %v\n%s%s", err, out, errs)
		}
		out, errs, err = idevice(t, f, "ideviceinfo", "-u", id.UDID)
		if err != nil {
			t.Fatalf("ideviceinfo -u %s: %v\n%s", id.UDID, err, errs)
		}
		for _, w := range []string{"UniqueDeviceID: " + id.UDID, "ProductVersion: 17.4", "BuildVersion: 21E219",
			"DeviceName: " + id.DeviceName, "SerialNumber: " + id.SerialNumber, "ProductType: " + id.ProductType,
			"HardwareModel: " + id.HWModel, "CPUArchitecture: arm64e"} {
			if !strings.Contains(out, w) {
				t.Errorf("ideviceinfo output lacks %q:\n%s", w, out)
			}
		}
		out, _, err = idevice(t, f, "ideviceinfo", "-u", id.UDID, "-k", "WiFiAddress")
		if err != nil || strings.TrimSpace(out) != id.WiFiMAC {
			t.Errorf("ideviceinfo -k WiFiAddress = %q, %v", out, err)
		}
	}

	// A device whose user refuses Trust: libimobiledevice reports it.
	d := f.Devices()[2]
	d.SetTrust(sim.TrustDeny)
	out, errs, err = idevice(t, f, "idevicepair", "-u", d.UDID(), "pair")
	if err == nil || strings.Contains(out, "SUCCESS") {
		t.Errorf("idevicepair against a refused Trust dialog: %v\n%s%s", err, out, errs)
	}
	// Unplugged devices disappear from idevice_id.
	f.Devices()[3].Unplug()
	out, _, _ = idevice(t, f, "idevice_id", "-l")
	if slices.Contains(strings.Fields(out), f.Devices()[3].UDID()) || len(strings.Fields(out)) != n-1 {
		t.Errorf("after unplug idevice_id -l = %q", out)
	}
}
