package lockdown

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/usbmux"
)

func TestPairSessionAndService(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t, ServerConfig{})
	ctx := testCtx(t)

	c := r.dial(t)
	typ, err := c.QueryType(ctx)
	if err != nil || typ != TypeLockdown {
		t.Fatalf("QueryType = %q, %v", typ, err)
	}
	// Before a session: the reduced set only.
	if v, err := c.GetValue(ctx, "", "ProductVersion"); err != nil || v != "17.5" {
		t.Errorf("GetValue ProductVersion before a session = %v, %v", v, err)
	}
	if _, err := c.GetValue(ctx, "", "SerialNumber"); !errors.Is(err, &Error{Code: CodeGetProhibited}) {
		t.Errorf("GetValue SerialNumber before a session: %v; want GetProhibited", err)
	}
	pre, err := c.GetValues(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pre["SerialNumber"]; ok || pre["UniqueDeviceID"] != testUDID {
		t.Errorf("all values before a session = %v", pre)
	}

	// No pair record yet: usbmuxd says so.
	if _, err := ReadPairRecord(ctx, r.mux, testUDID); !errors.Is(err, usbmux.ErrNoPairRecord) {
		t.Fatalf("ReadPairRecord before pairing: %v", err)
	}
	rec := r.pair(t)
	if rec.UDID != testUDID || rec.WiFiMACAddress != "aa:bb:cc:dd:ee:ff" || len(rec.EscrowBag) == 0 {
		t.Errorf("record UDID %q WiFi %q escrow %d bytes", rec.UDID, rec.WiFiMACAddress, len(rec.EscrowBag))
	}
	if got := r.dev.HostIDs(); !reflect.DeepEqual(got, []string{rec.HostID}) {
		t.Errorf("device hosts = %v, want [%s]", got, rec.HostID)
	}
	stored, err := ReadPairRecord(ctx, r.mux, testUDID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stored, rec) {
		t.Errorf("stored record differs from the paired one")
	}

	c = r.dial(t)
	if err := c.ValidatePair(ctx, stored); err != nil {
		t.Errorf("ValidatePair: %v", err)
	}
	s, err := c.StartSession(ctx, stored)
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	if !s.TLS || s.ID == "" {
		t.Errorf("session %+v; want TLS", s)
	}
	all, err := c.GetValues(ctx, "")
	if err != nil || all["SerialNumber"] != "F2LXXXXXXXXX" {
		t.Fatalf("all values in a session: %v, %v", all, err)
	}
	if !bytes.Equal(all["DevicePublicKey"].([]byte), r.dev.PublicKeyPEM()) {
		t.Error("DevicePublicKey differs from the device's key")
	}
	if err := c.SetValue(ctx, "com.apple.mobile.wireless_lockdown", "EnableWifiConnections", true); err != nil {
		t.Fatal(err)
	}
	if v, err := c.GetValue(ctx, "com.apple.mobile.wireless_lockdown", "EnableWifiConnections"); err != nil || v != true {
		t.Errorf("GetValue after SetValue = %v, %v", v, err)
	}
	if _, err := c.GetValue(ctx, "", "NoSuchKey"); !errors.Is(err, ErrMissingValue) {
		t.Errorf("GetValue of a missing key: %v", err)
	}

	// CoreDeviceProxy: a TLS service on a one-shot port.
	info, err := c.StartService(ctx, CoreDeviceProxy, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !info.SSL || info.Port == 0 {
		t.Errorf("StartService = %+v; want a port with SSL", info)
	}
	svc, err := DialService(ctx, r.mux, r.deviceID, info, stored, 0)
	if err != nil {
		t.Fatal(err)
	}
	svc.SetDeadline(time.Now().Add(10 * time.Second))
	svc.Write([]byte("cdtunnel"))
	buf := make([]byte, 8)
	if _, err := io.ReadFull(svc, buf); err != nil || string(buf) != "cdtunnel" {
		t.Errorf("service echo = %q, %v", buf, err)
	}
	svc.Close()
	if _, err := c.StartService(ctx, "com.apple.nope", nil); !errors.Is(err, ErrInvalidService) {
		t.Errorf("StartService of an unknown service: %v; want ErrInvalidService", err)
	}

	// StopSession drops back to plaintext: the reduced set again.
	if err := c.StopSession(ctx); err != nil {
		t.Fatalf("StopSession: %v", err)
	}
	if _, err := c.GetValue(ctx, "", "SerialNumber"); !errors.Is(err, &Error{Code: CodeGetProhibited}) {
		t.Errorf("GetValue SerialNumber after StopSession: %v; want GetProhibited", err)
	}
	if _, err := c.StartService(ctx, CoreDeviceProxy, nil); !errors.Is(err, &Error{Code: CodeSessionInactive}) {
		t.Errorf("StartService without a session: %v", err)
	}
	if s, err := c.StartSession(ctx, stored); err != nil || !s.TLS {
		t.Errorf("second StartSession = %+v, %v", s, err)
	}

	// Unpair forgets the host.
	if err := c.Unpair(ctx, stored); err != nil {
		t.Fatal(err)
	}
	c2 := r.dial(t)
	if _, err := c2.StartSession(ctx, stored); !errors.Is(err, ErrInvalidHostID) {
		t.Errorf("StartSession after Unpair: %v; want ErrInvalidHostID", err)
	}
}

func TestStartSessionUnknownHost(t *testing.T) {
	r := newRig(t, ServerConfig{})
	ctx := testCtx(t)
	rec, err := NewPairRecord(nil, r.dev.PublicKeyPEM(), "11111111-2222-4333-8444-555555555555", "BUID", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := r.dial(t)
	if _, err := c.StartSession(ctx, rec); !errors.Is(err, ErrInvalidHostID) {
		t.Errorf("StartSession with an unknown host: %v; want ErrInvalidHostID", err)
	}
	if err := c.ValidatePair(ctx, rec); !errors.Is(err, ErrInvalidHostID) {
		t.Errorf("ValidatePair with an unknown host: %v", err)
	}
}

// TestSessionClientCertificate: the root certificate (libimobiledevice's
// choice) is accepted, a certificate from another pairing is not.
func TestSessionClientCertificate(t *testing.T) {
	r := newRig(t, ServerConfig{})
	ctx := testCtx(t)
	rec := r.pair(t)

	asRoot := *rec
	asRoot.HostCertificate, asRoot.HostPrivateKey = rec.RootCertificate, rec.RootPrivateKey
	if s, err := r.dial(t).StartSession(ctx, &asRoot); err != nil || !s.TLS {
		t.Errorf("session with the root certificate = %+v, %v", s, err)
	}

	other, err := NewPairRecord(nil, r.dev.PublicKeyPEM(), "X", "Y", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged := *rec
	forged.HostCertificate, forged.HostPrivateKey = other.HostCertificate, other.HostPrivateKey
	// With TLS 1.3 the client finishes its handshake before the device
	// checks the certificate, so the rejection may surface one request later.
	c := r.dial(t)
	_, err = c.StartSession(ctx, &forged)
	if err == nil {
		_, err = c.GetValue(ctx, "", "SerialNumber")
	}
	if err == nil {
		t.Error("session with another pairing's certificate succeeded")
	}
}

func TestPairTrustDialog(t *testing.T) {
	answers := []TrustAnswer{TrustPending, TrustPending, TrustAccept}
	var asked []string
	r := newRig(t, ServerConfig{Trust: func(host string) TrustAnswer {
		asked = append(asked, host)
		a := answers[0]
		answers = answers[1:]
		return a
	}})
	ctx := testCtx(t)
	c := r.dial(t)
	rec, err := c.Pair(ctx, PairConfig{SystemBUID: "B", HostName: "h", PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 3 || asked[0] != "h" {
		t.Errorf("Trust asked %v; want three times for host h", asked)
	}
	if got := r.dev.HostIDs(); len(got) != 1 || got[0] != rec.HostID {
		t.Errorf("hosts after pairing = %v", got)
	}

	answers = []TrustAnswer{TrustDeny}
	if _, err := r.dial(t).Pair(ctx, PairConfig{SystemBUID: "B"}); !errors.Is(err, ErrUserDeniedPairing) {
		t.Errorf("Pair denied: %v; want ErrUserDeniedPairing", err)
	}
}

func TestPairRejectsForeignDeviceCertificate(t *testing.T) {
	r := newRig(t, ServerConfig{})
	ctx := testCtx(t)
	// A record made for another device's key.
	rec, err := NewPairRecord(nil, PublicKeyPEM(&testKey(t, 1).PublicKey), "H", "B", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.dial(t).Request(ctx, map[string]any{"Request": "Pair", "PairRecord": rec.public(), "HostName": "x"})
	if !errors.Is(err, &Error{Code: CodeInvalidPairRecord}) {
		t.Errorf("Pair with a foreign device certificate: %v", err)
	}
	if err := r.dev.AddPairing(rec); err == nil {
		t.Error("AddPairing accepted a foreign device certificate")
	}
}

func TestPairRecordRoundTrip(t *testing.T) {
	rec, err := NewPairRecord(nil, PublicKeyPEM(&testKey(t, 0).PublicKey), "H", "B", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec.WiFiMACAddress, rec.EscrowBag = "aa:bb:cc:dd:ee:ff", []byte{1, 2}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePairRecord(b)
	if err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	if !bytes.Contains(rec.HostPrivateKey, []byte("RSA PRIVATE KEY")) {
		t.Error("host key not PKCS#1, which libimobiledevice needs")
	}
	bad := []struct {
		name string
		in   []byte
	}{
		{"not a plist", []byte("nope")},
		{"no HostID", mustMarshal(t, &PairRecord{HostCertificate: rec.HostCertificate, HostPrivateKey: rec.HostPrivateKey})},
		{"no key", mustMarshal(t, &PairRecord{HostID: "H", HostCertificate: rec.HostCertificate})},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParsePairRecord(tt.in); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func mustMarshal(t *testing.T, r *PairRecord) []byte {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPairAcceptsSHA1Certificates: libimobiledevice 1.3.0 signs its pairing
// certificates with SHA-1, which crypto/x509 will not verify; the device
// role checks them itself, and still rejects a bad signature.
func TestPairAcceptsSHA1Certificates(t *testing.T) {
	dev, err := NewServer(ServerConfig{Key: testKey(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	rootKey, hostKey := testKey(t, 1), testKey(t, 1)
	now := time.Now()
	sign := func(tpl, parent *x509.Certificate, pub *rsa.PublicKey) []byte {
		tpl.SignatureAlgorithm = x509.SHA1WithRSA
		der, err := x509.CreateCertificate(rand.Reader, tpl, parent, pub, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	root := template(now)
	root.IsCA = true
	rootDER := sign(root, root, &rootKey.PublicKey)
	rootCert, _ := x509.ParseCertificate(rootDER)
	hostDER := sign(leafTemplate(now), rootCert, &hostKey.PublicKey)
	devDER := sign(leafTemplate(now), rootCert, &testKey(t, 0).PublicKey)
	rec := &PairRecord{HostID: "SHA1HOST", SystemBUID: "B", RootCertificate: certPEM(rootDER), HostCertificate: certPEM(hostDER), DeviceCertificate: certPEM(devDER)}
	if err := dev.AddPairing(rec); err != nil {
		t.Fatalf("AddPairing with SHA-1 certificates: %v", err)
	}
	bad := bytes.Clone(hostDER)
	bad[len(bad)-1] ^= 1 // last byte of the signature
	rec.HostCertificate = certPEM(bad)
	if err := dev.AddPairing(rec); err == nil {
		t.Error("AddPairing accepted a corrupted SHA-1 signature")
	}
}

// TestDeviceDropsMidSession: the simulated device goes away while a host
// holds a session and a service connection; both see a clear error, not a
// hang, and nothing leaks.
func TestDeviceDropsMidSession(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t, ServerConfig{})
	ctx := testCtx(t)
	rec := r.pair(t)
	c := r.dial(t)
	if _, err := c.StartSession(ctx, rec); err != nil {
		t.Fatal(err)
	}
	info, err := c.StartService(ctx, CoreDeviceProxy, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := DialService(ctx, r.mux, r.deviceID, info, rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	r.srv.RemoveDevice(r.deviceID)
	r.dev.Close() // the phone is unplugged: every connection to it ends

	_, err = c.GetValue(ctx, "", "ProductVersion")
	if err == nil || !strings.Contains(err.Error(), "GetValue") {
		t.Errorf("GetValue after the device dropped: %v", err)
	}
	svc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := svc.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("service read after the device dropped: %v; want the connection closed", err)
	}
	if _, err := DialUsbmux(ctx, r.mux, r.deviceID, ClientConfig{}); !errors.Is(err, usbmux.ErrBadDevice) {
		t.Errorf("reconnecting to the removed device: %v; want ErrBadDevice", err)
	}
}

func TestOpenService(t *testing.T) {
	r := newRig(t, ServerConfig{})
	ctx := testCtx(t)
	dev := usbmux.DeviceEntry{DeviceID: r.deviceID, SerialNumber: strings.ReplaceAll(testUDID, "-", "")}
	if _, _, err := OpenService(ctx, r.mux, dev, CoreDeviceProxy, ClientConfig{}); !errors.Is(err, usbmux.ErrNoPairRecord) || !strings.Contains(err.Error(), testUDID) {
		t.Errorf("OpenService unpaired: %v; want ErrNoPairRecord naming the device", err)
	}
	r.pair(t)
	conn, info, err := OpenService(ctx, r.mux, dev, CoreDeviceProxy, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !info.SSL {
		t.Errorf("info %+v; want SSL", info)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("hi"))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hi" {
		t.Errorf("echo = %q, %v", buf, err)
	}
	if _, _, err := OpenService(ctx, r.mux, dev, "com.apple.nope", ClientConfig{}); !errors.Is(err, ErrInvalidService) {
		t.Errorf("OpenService of an unknown service: %v", err)
	}
}

// TestServiceKeepsWriteBoundaries: every Write on a service connection is
// one TLS record in both directions, so a CoreDeviceProxy tunnel's packets
// reach a device that reads one packet per record intact (tunnel.md §3.1).
// crypto/tls's dynamic record sizing would split the first large writes.
func TestServiceKeepsWriteBoundaries(t *testing.T) {
	r := newRig(t, ServerConfig{})
	r.pair(t)
	ctx := testCtx(t)
	dev := usbmux.DeviceEntry{DeviceID: r.deviceID, SerialNumber: strings.ReplaceAll(testUDID, "-", "")}
	conn, _, err := OpenService(ctx, r.mux, dev, CoreDeviceProxy, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	const packets, size = 8, 4000
	go func() {
		for i := range packets {
			conn.Write(bytes.Repeat([]byte{byte(i)}, size))
		}
	}()
	buf := make([]byte, 64<<10)
	for i := range packets {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if n != size {
			t.Fatalf("read %d returned %d bytes, want one whole %d-byte record", i, n, size)
		}
	}
}

// TestNoSessionTickets: the device's TLS (session and services) issues no
// TLS 1.3 session ticket. libimobiledevice's clients gave up on about one
// service connection in ten when one arrived after the handshake (its
// idevicenotificationproxy post lost the post).
func TestNoSessionTickets(t *testing.T) {
	r := newRig(t, ServerConfig{})
	rec := r.pair(t)
	var h *hostPairing
	r.dev.mu.Lock()
	for _, hp := range r.dev.hosts {
		h = hp
	}
	r.dev.mu.Unlock()
	if h == nil {
		t.Fatal("no paired host")
	}
	cfg, err := clientTLSConfig(rec)
	if err != nil {
		t.Fatal(err)
	}
	cache := &ticketCache{}
	cfg.ClientSessionCache = cache
	a, b := net.Pipe()
	go func() {
		s := tls.Server(b, r.dev.serverTLS(h))
		if s.Handshake() == nil {
			s.Write([]byte{1}) // after any ticket
		}
		s.Close()
	}()
	c := tls.Client(a, cfg)
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Logf("negotiated %#x", v)
	}
	if cache.puts.Load() != 0 {
		t.Error("the device sent a session ticket")
	}
}

// ticketCache counts the sessions a TLS client would keep.
type ticketCache struct{ puts atomic.Int32 }

func (c *ticketCache) Get(string) (*tls.ClientSessionState, bool) { return nil, false }
func (c *ticketCache) Put(_ string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts.Add(1)
	}
}
