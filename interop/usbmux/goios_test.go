package usbmux_test

import (
	"io"
	"slices"
	"testing"
	"time"

	ios "github.com/danielpaulus/go-ios/ios"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/usbmux"
)

// TestGoIOS: go-ios v1.3.2's usbmux and lockdown clients against our server
// and device roles. go-ios reads USBMUXD_SOCKET_ADDRESS itself; its
// scheme form is unix://<path>.
func TestGoIOS(t *testing.T) {
	r := newRig(t, devA, devB)
	t.Setenv("USBMUXD_SOCKET_ADDRESS", "unix://"+r.path)

	list, err := ios.ListDevices()
	if err != nil {
		t.Fatalf("ios.ListDevices: %v", err)
	}
	var serials []string
	for _, d := range list.DeviceList {
		serials = append(serials, d.Properties.SerialNumber)
		if d.DeviceID != int(r.ids[usbmux.CanonicalUDID(d.Properties.SerialNumber)]) || d.Properties.ConnectionType != "USB" || d.Properties.ProductID != 4776 {
			t.Errorf("go-ios device entry %+v", d)
		}
	}
	if want := []string{devA.Serial, devB.Serial}; !slices.Equal(serials, want) {
		t.Fatalf("go-ios serials = %q, want %q", serials, want)
	}
	entryA := list.DeviceList[0]

	// No record yet: go-ios reports it.
	if _, err := ios.GetValues(entryA); err == nil {
		t.Error("ios.GetValues without a pair record succeeded")
	}

	rec := r.pair(t, devA.UDID)
	// go-ios asks for the record with the dashless serial usbmuxd listed.
	got, err := ios.ReadPairRecord(entryA.Properties.SerialNumber)
	if err != nil || got.HostID != rec.HostID || got.SystemBUID != rec.SystemBUID {
		t.Fatalf("ios.ReadPairRecord = %+v, %v", got, err)
	}
	muxc, err := ios.NewUsbMuxConnectionSimple()
	if err != nil {
		t.Fatal(err)
	}
	buid, err := muxc.ReadBuid()
	muxc.Close()
	if err != nil || buid != r.srv.BUID() {
		t.Errorf("ios.ReadBuid = %q, %v; want %q", buid, err, r.srv.BUID())
	}

	vals, err := ios.GetValues(entryA)
	if err != nil {
		t.Fatalf("ios.GetValues: %v", err)
	}
	v := vals.Value
	if v.UniqueDeviceID != devA.UDID || v.ProductVersion != "17.5" || v.DeviceName != "Sim A" ||
		v.SerialNumber != "F2L"+devA.UDID[len(devA.UDID)-9:] || v.UniqueChipID != 0x1A2B3C0E01401E ||
		!slices.Equal(v.SupportedDeviceFamilies, []int{1}) || v.TimeIntervalSince1970 != 1.7e9 {
		t.Errorf("ios.GetValues = %+v", v)
	}
	m, err := ios.GetValuesPlist(entryA)
	if err != nil || m["CPUArchitecture"] != "arm64e" {
		t.Errorf("ios.GetValuesPlist CPUArchitecture = %v, %v", m["CPUArchitecture"], err)
	}

	// go-ios's own lockdown calls on one session: SetValue, GetValueForDomain.
	ld, err := ios.ConnectLockdownWithSession(entryA)
	if err != nil {
		t.Fatalf("ios.ConnectLockdownWithSession: %v", err)
	}
	if err := ld.SetValueForDomain("EnableWifiConnections", "com.apple.mobile.wireless_lockdown", true); err != nil {
		t.Errorf("go-ios SetValue: %v", err)
	}
	if got, err := ld.GetValueForDomain("EnableWifiConnections", "com.apple.mobile.wireless_lockdown"); err != nil || got != true {
		t.Errorf("go-ios GetValueForDomain = %v, %v", got, err)
	}
	ld.Close()

	// CoreDeviceProxy through go-ios: StartService, a new usbmux Connect and
	// the TLS handshake on the service connection.
	svc, err := ios.ConnectToService(entryA, lockdown.CoreDeviceProxy)
	if err != nil {
		t.Fatalf("ios.ConnectToService(CoreDeviceProxy): %v", err)
	}
	defer svc.Close()
	svc.Conn().SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := svc.Write([]byte("CDTunnel")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := io.ReadFull(svc.Reader(), buf); err != nil || string(buf) != "CDTunnel" {
		t.Errorf("service echo through go-ios = %q, %v", buf, err)
	}
	if _, err := ios.StartService(entryA, "com.apple.nonexistent"); err == nil {
		t.Error("go-ios StartService of an unknown service succeeded")
	}
}

// TestGoIOSListen: go-ios's Listen sees the snapshot and live events.
func TestGoIOSListen(t *testing.T) {
	r := newRig(t, devA)
	t.Setenv("USBMUXD_SOCKET_ADDRESS", "unix://"+r.path)
	mux, err := ios.NewUsbMuxConnectionSimple()
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	next, err := mux.Listen()
	if err != nil {
		t.Fatalf("go-ios Listen: %v", err)
	}
	// go-ios reads without a deadline; closing the socket ends a stuck read.
	stop := time.AfterFunc(time.Minute, func() { mux.Close() })
	defer stop.Stop()

	msg, err := next()
	if err != nil || !msg.DeviceAttached() || msg.Properties.SerialNumber != devA.Serial {
		t.Fatalf("go-ios first event = %+v, %v; want Attached %s", msg, err, devA.Serial)
	}
	id := r.srv.AddDevice(usbmux.DeviceEntry{SerialNumber: devB.Serial, ConnectionType: usbmux.ConnectionUSB}, usbmux.NewPortMux(0))
	msg, err = next()
	if err != nil || !msg.DeviceAttached() || msg.DeviceID != int(id) {
		t.Fatalf("go-ios event after AddDevice = %+v, %v", msg, err)
	}
	r.srv.RemoveDevice(id)
	msg, err = next()
	if err != nil || !msg.DeviceDetached() || msg.DeviceID != int(id) {
		t.Fatalf("go-ios event after RemoveDevice = %+v, %v", msg, err)
	}
}
