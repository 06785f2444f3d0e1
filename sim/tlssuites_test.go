package sim

import (
	"context"
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

// tlsSuiteWith opens a TLS-PSK tunnel connection to d over network
// RemotePairing, offering offer (nil: tlspsk's default), and returns the
// suite it got.
func tlsSuiteWith(t *testing.T, ctx context.Context, d *Device, offer []uint16) uint16 {
	t.Helper()
	addr := d.Endpoints().NetworkPairing
	host, _, _ := net.SplitHostPort(addr)
	dialPort := func(ctx context.Context, port int) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "tcp", joinHostPort(host, uint16(port)))
	}
	tc, err := remoteTLSPSK(t, ctx, pairing.RecordStore{Dir: t.TempDir()}, rppDial(addr), dialPort, offer)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	return tc.ConnectionState().CipherSuite
}
