package sim

import (
	"context"
	"crypto/ed25519"
	"net"
	"slices"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/tlspsk"
)

func TestParseTLSSuites(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint16
		wantErr bool
	}{
		{"aead", []uint16{0x00A9, 0x00A8, 0xCCAB, 0x00AF, 0x008C}, false},
		{"", []uint16{0x00A9, 0x00A8, 0xCCAB, 0x00AF, 0x008C}, false},
		{"CBC", []uint16{0x00AF, 0x00A9, 0x00A8, 0xCCAB, 0x008C}, false},
		{"TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, 0x008c", []uint16{0xCCAB, 0x008C}, false},
		{"0x00AE", nil, true}, // PSK-AES128-CBC-SHA256: not implemented
		{"0x00A9,0x00a9", nil, true},
		{"gcm", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseTLSSuites(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParseTLSSuites(%q) = %04x, %v; want %04x, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	// The presets are copies: changing one must not change the defaults.
	p, _ := ParseTLSSuites("aead")
	p[0] = 0
	if tlspsk.DefaultServerSuites[0] != tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384 {
		t.Fatal("ParseTLSSuites handed out tlspsk.DefaultServerSuites itself")
	}
}

// TestTLSSuitesPreference opens the RemotePairing TLS-PSK listener of a
// device with each preference and checks the suite each reference's
// hello gets (tlspsk.md §3.3).
func TestTLSSuitesPreference(t *testing.T) {
	testkit.CheckLeaks(t)
	r := newRig(t)
	tests := []struct {
		name   string
		device []uint16 // Realism.TLSSuites
		offer  []uint16 // the client's hello
		want   uint16
	}{
		{"default device, iosmux offer", nil, nil, tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384},
		{"default device, idevice offer", nil, []uint16{0x00AF, 0x008C}, tlspsk.TLS_PSK_WITH_AES_256_CBC_SHA384},
		{"CBC device, iosmux offer", TLSSuitesCBC, nil, tlspsk.TLS_PSK_WITH_AES_256_CBC_SHA384},
		{"CBC device, go-ios offer", TLSSuitesCBC, []uint16{0x00A9}, tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384},
		{"ChaCha device, iosmux offer", []uint16{0xCCAB, 0x00A9}, nil, tlspsk.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := r.device(t, Config{Index: 10 + i, Realism: Realism{TLSSuites: tt.device}})
			ctx := testCtx(t)
			if got := tlsSuiteWith(t, ctx, d, tt.offer); got != tt.want {
				t.Errorf("negotiated %s, want %s", tlspsk.CipherSuiteName(got), tlspsk.CipherSuiteName(tt.want))
			}
		})
	}
}

// tlsSuiteWith pairs with d over network RemotePairing, asks for a TCP
// listener and returns the suite a TLS-PSK handshake offering offer (nil:
// tlspsk's default) gets.
func tlsSuiteWith(t *testing.T, ctx context.Context, d *Device, offer []uint16) uint16 {
	t.Helper()
	addr := d.Endpoints().NetworkPairing
	host, _, _ := net.SplitHostPort(addr)
	store := pairing.RecordStore{Dir: t.TempDir()}
	res, err := pairing.Pair(ctx, &pairing.PairConfig{Host: pairing.ClientConfig{HostName: "sim-test"}, Dial: rppDial(addr), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.Load(res.ID)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := rppDial(addr)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := pairing.NewClient(tr, &pairing.ClientConfig{HostName: "sim-test"})
	defer h.Close()
	if _, err := h.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(ctx, pairing.Identity{Identifier: rec.HostIdentifier, PrivateKey: ed25519.NewKeyFromSeed(rec.PrivateKey)}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	l, err := h.CreateListener(ctx, pairing.ListenerRequest{Transport: pairing.TransportTCP, Key: h.SharedSecret()})
	if err != nil {
		t.Fatal(err)
	}
	var dl net.Dialer
	nc, err := dl.DialContext(ctx, "tcp", joinHostPort(host, uint16(l.Port)))
	if err != nil {
		t.Fatal(err)
	}
	tc := tlspsk.Client(nc, &tlspsk.Config{PSK: h.SharedSecret(), CipherSuites: offer})
	defer tc.Close()
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS-PSK: %v", err)
	}
	return tc.ConnectionState().CipherSuite
}
