package usbmux_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/lockdown"
)

// idevice runs a libimobiledevice tool against the rig: the usbmuxd address
// comes from USBMUXD_SOCKET_ADDRESS=UNIX:<path> (libusbmuxd's form), and
// the tool runs in a private mount namespace whose /var/lib is a scratch
// directory, so nothing it might write under /var/lib/lockdown reaches the
// host. HOME points at the scratch directory too.
func (r *rig) idevice(t *testing.T, tool string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	needTool(t, tool)
	needTool(t, "unshare")
	scratch := t.TempDir()
	ctx, cancel := context.WithTimeout(testCtx(t), 60e9)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private",
		"sh", "-c", `mount --bind "$0" /var/lib && exec "$@"`, scratch, tool)
	cmd.Args = append(cmd.Args, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS=UNIX:"+r.path, "HOME="+scratch)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	// libimobiledevice keeps records in usbmuxd; it must not have written
	// any lockdown files of its own.
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Errorf("%s wrote %v into its private /var/lib and HOME", tool, ents)
	}
	return out.String(), errb.String(), err
}

var (
	devA = simDevice{UDID: "00008110-001A2B3C0E01401E", Serial: "00008110001A2B3C0E01401E", Name: "Sim A", Version: "17.5"}
	devB = simDevice{UDID: "63c3d055c4f83e960e5980fa68be0fbf7d4ba74c", Serial: "63c3d055c4f83e960e5980fa68be0fbf7d4ba74c", Name: "Sim B", Version: "17.4"}
	// devOld makes libimobiledevice cap TLS at 1.0 (devices before iOS 10).
	devOld = simDevice{UDID: "0123456789abcdef0123456789abcdef01234567", Serial: "0123456789abcdef0123456789abcdef01234567", Name: "Sim Old", Version: "9.3.5"}
)

func TestLibimobiledevice(t *testing.T) {
	_, statBefore := os.Stat("/var/lib/lockdown")
	r := newRig(t, devA, devB, devOld)

	// idevice_id -l lists every device; libusbmuxd puts the dash back into
	// the 24-digit serial.
	out, errs, err := r.idevice(t, "idevice_id", "-l")
	if err != nil {
		t.Fatalf("idevice_id -l: %v\n%s", err, errs)
	}
	got := lines(out)
	slices.Sort(got)
	want := []string{devOld.UDID, devA.UDID, devB.UDID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("idevice_id -l = %q, want %q", got, want)
	}

	// With a record made by our lockdown client, ideviceinfo reads values
	// that only a TLS session shows (SerialNumber), validating against our
	// device role with its root certificate.
	rec := r.pair(t, devA.UDID)
	out, errs, err = r.idevice(t, "ideviceinfo", "-u", devA.UDID)
	if err != nil {
		t.Fatalf("ideviceinfo -u %s: %v\n%s", devA.UDID, err, errs)
	}
	for _, w := range []string{"UniqueDeviceID: " + devA.UDID, "ProductVersion: 17.5", "DeviceName: Sim A", "SerialNumber: F2L" + devA.UDID[len(devA.UDID)-9:], "CPUArchitecture: arm64e"} {
		if !strings.Contains(out, w) {
			t.Errorf("ideviceinfo output lacks %q:\n%s", w, out)
		}
	}
	out, _, err = r.idevice(t, "ideviceinfo", "-u", devA.UDID, "-k", "ProductType")
	if err != nil || strings.TrimSpace(out) != "iPhone15,2" {
		t.Errorf("ideviceinfo -k ProductType = %q, %v", out, err)
	}
	out, errs, err = r.idevice(t, "idevicepair", "-u", devA.UDID, "validate")
	if err != nil || !strings.Contains(out, "SUCCESS: Validated pairing with device "+devA.UDID) {
		t.Errorf("idevicepair validate: %v\n%s%s", err, out, errs)
	}

	// libimobiledevice pairs device B itself: its OpenSSL-made record goes
	// into our usbmuxd, our device accepts it, and our Go client can open a
	// session with it.
	out, errs, err = r.idevice(t, "idevicepair", "-u", devB.UDID, "pair")
	if err != nil || !strings.Contains(out, "SUCCESS: Paired with device "+devB.UDID) {
		t.Fatalf("idevicepair pair: %v\n%s%s", err, out, errs)
	}
	raw, ok := r.srv.PairRecord(devB.UDID)
	if !ok {
		t.Fatal("libimobiledevice saved no pair record through our usbmuxd")
	}
	recB, err := lockdown.ParsePairRecord(raw)
	if err != nil {
		t.Fatalf("libimobiledevice's record: %v", err)
	}
	if hosts := r.devs[devB.UDID].HostIDs(); !slices.Equal(hosts, []string{recB.HostID}) {
		t.Errorf("device B trusts %v, want libimobiledevice's host %s", hosts, recB.HostID)
	}
	ctx := testCtx(t)
	lc, err := lockdown.DialUsbmux(ctx, r.mux, r.ids[devB.UDID], lockdown.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	if s, err := lc.StartSession(ctx, recB); err != nil || !s.TLS {
		t.Fatalf("our session with libimobiledevice's record = %+v, %v", s, err)
	}
	if v, err := lc.GetValue(ctx, "", "SerialNumber"); err != nil || v != "F2L"+devB.UDID[len(devB.UDID)-9:] {
		t.Errorf("GetValue in that session = %v, %v", v, err)
	}
	out, errs, err = r.idevice(t, "ideviceinfo", "-u", devB.UDID, "-k", "DeviceName")
	if err != nil || strings.TrimSpace(out) != "Sim B" {
		t.Errorf("ideviceinfo on B = %q, %v\n%s", out, err, errs)
	}

	// An old device: libimobiledevice drops to TLS 1.0, which our device
	// role still serves.
	r.pair(t, devOld.UDID)
	out, errs, err = r.idevice(t, "ideviceinfo", "-u", devOld.UDID, "-k", "SerialNumber")
	if err != nil || strings.TrimSpace(out) != "F2L"+devOld.UDID[len(devOld.UDID)-9:] {
		t.Errorf("ideviceinfo on an iOS 9 device = %q, %v\n%s", out, err, errs)
	}
	if v := r.sessionTLS(devOld.UDID); len(v) == 0 || v[len(v)-1] != tls.VersionTLS10 {
		t.Errorf("session TLS versions of the iOS 9 device = %x; want libimobiledevice's TLS 1.0 last", v)
	}
	for _, v := range r.sessionTLS(devA.UDID) {
		if v < tls.VersionTLS12 {
			t.Errorf("an iOS 17 device negotiated TLS %x", v)
		}
	}

	// The device forgets A's host (our client's Unpair; the record stays in
	// usbmuxd): validation must now fail.
	lcA, err := lockdown.DialUsbmux(ctx, r.mux, r.ids[devA.UDID], lockdown.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer lcA.Close()
	if err := lcA.Unpair(ctx, rec); err != nil {
		t.Fatal(err)
	}
	out, errs, err = r.idevice(t, "idevicepair", "-u", devA.UDID, "validate")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || strings.Contains(out, "SUCCESS") {
		t.Errorf("idevicepair validate after the device forgot the host: %v\n%s%s", err, out, errs)
	}

	if _, statAfter := os.Stat("/var/lib/lockdown"); (statBefore == nil) != (statAfter == nil) {
		t.Errorf("/var/lib/lockdown on the host changed existence (before %v, after %v)", statBefore, statAfter)
	}
}
