package tunneld

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/sim"
)

// TestIdentify runs the three identification hooks against a simulated
// device's loopback surfaces: USB-NCM reads the UDID from the untrusted RSD;
// Wi-Fi accepts the device only once a RemotePairing record exists (made
// here by pairOverRSD, pymobiledevice3's NCM pairing); mobdev2 matches the
// Wi-Fi MAC against the classic records.
func TestIdentify(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sim.StartFleet(sim.FleetConfig{Count: 1, Profile: sim.MustProfile("18.2"), Loopback: true, LockdownKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dev := f.Devices()[0]
	ep := dev.Endpoints()
	store := pairing.RecordStore{Dir: t.TempDir()}
	e := &establisher{records: classicRecords{store: store}, store: store, hostName: "identify-test", log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	udid, err := e.identifyNCM(ctx, discovery.Event{Addr: netip.MustParseAddrPort(ep.UntrustedRSD)})
	if err != nil || udid != dev.UDID() {
		t.Errorf("identifyNCM = %q, %v; want %s", udid, err, dev.UDID())
	}
	if _, err := e.identifyNCM(ctx, discovery.Event{Addr: netip.MustParseAddrPort(ep.NetworkPairing)}); err == nil {
		t.Error("identifyNCM accepted a port that is not RSD")
	}

	wifi := discovery.Event{Addr: netip.MustParseAddrPort(ep.NetworkPairing)}
	if udid, err := e.identifyWiFi(ctx, wifi); err == nil {
		t.Errorf("identifyWiFi without a record = %q, want an error", udid)
	}
	pairRSD := func(ctx context.Context, addr, udid string) error {
		return establish.PairRSD(ctx, addr, e.options(&hostTUN{e: e}, udid))
	}
	if err := pairRSD(ctx, ep.UntrustedRSD, dev.UDID()); err != nil {
		t.Fatalf("pairOverRSD: %v", err)
	}
	if err := pairRSD(ctx, ep.UntrustedRSD, "00008030-0000000000000BAD"); err == nil {
		t.Error("pairOverRSD paired a device that names itself otherwise")
	}
	if udid, err := e.identifyWiFi(ctx, wifi); err != nil || udid != dev.UDID() {
		t.Errorf("identifyWiFi with a record = %q, %v", udid, err)
	}

	const mac = "aa:bb:cc:dd:ee:ff"
	if _, err := e.identifyMobdev2(ctx, discovery.Event{WiFiMAC: mac}); err == nil {
		t.Error("identifyMobdev2 without records succeeded")
	}
	rec, err := lockdown.NewPairRecord(rand.Reader, pubPEM(t, key), "HOST-ID", "BUID", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec.WiFiMACAddress = "AA:BB:CC:DD:EE:FF"
	if err := e.records.save(dev.UDID(), rec); err != nil {
		t.Fatal(err)
	}
	if udid, err := e.identifyMobdev2(ctx, discovery.Event{WiFiMAC: mac}); err != nil || udid != dev.UDID() {
		t.Errorf("identifyMobdev2 = %q, %v", udid, err)
	}
	if got, err := e.records.load(dev.UDID()); err != nil || got.HostID != "HOST-ID" {
		t.Errorf("classic record round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "../x", "remote_x", "a/b"} {
		if err := e.records.save(bad, rec); err == nil {
			t.Errorf("saved a record under %q", bad)
		}
	}
}

func pubPEM(t *testing.T, k *rsa.PrivateKey) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.PublicKey)})
}
