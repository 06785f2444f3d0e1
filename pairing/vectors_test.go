package pairing

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// Helpers shared by the known-answer tests.

func readJSONFile(t testing.TB, name string, v any) {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %.20q: %v", s, err)
	}
	return b
}

func eqHex(t testing.TB, what string, got []byte, want string) {
	t.Helper()
	if g := hex.EncodeToString(got); g != want {
		t.Errorf("%s:\n got %s\nwant %s", what, g, want)
	}
}

// seq returns n consecutive byte values starting at first: the fixed inputs
// of the vectors (0x01…0x20, 0x41…0x60, …).
func seq(first byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = first + byte(i)
	}
	return b
}

// The fixed inputs of the vectors in testdata (remotepairing.md §10).
const (
	vecHostName   = "iosmux-test-host"
	vecHostID     = "942E345A-3EE9-3FD3-BC51-01F5B73569BD"
	vecDeviceID   = "D3A1F5C2-7B8E-4F60-9A1B-2C3D4E5F6071"
	vecDeviceUDID = "00008110-001A2B3C4D5E6F70"
	vecPort       = 60105
	vecPID        = 4242
)

var (
	vecHostSeed   = seq(0x01, 32)
	vecDeviceSeed = seq(0x21, 32)
	vecHostX1     = seq(0x41, 32)
	vecHostX2     = seq(0x61, 32)
	vecDeviceX1   = seq(0xc0, 32)
	vecDeviceX2   = seq(0xe0, 32)
	vecSRPa       = seq(0x81, 32)
	vecSRPb       = seq(0xa1, 32)
	vecSalt       = []byte{0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0x06, 0x17, 0x28, 0x39, 0x4a, 0x5b, 0x6c, 0x7d, 0x8e, 0x9f}
	vecEscrow     = seq(0x00, 48)
	vecDeviceIRK  = seq(0xd0, 16)
)

// vecHostInfo is the INFO dictionary pymobiledevice3 sends (opack.json
// "host-info-pymobiledevice3").
var vecHostInfo = HostInfo{
	AltIRK:       []byte{0xe9, 0xe8, 0x2d, 0xc0, 0x6a, 0x49, 0x79, 0x6b, 0x56, 0x6f, 0x54, 0x00, 0x19, 0xb1, 0xc7, 0x7b},
	BTAddr:       "11:22:33:44:55:66",
	MAC:          []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66},
	SerialNumber: "AAAAAAAAAAAA",
	AccountID:    vecHostID,
	Model:        "computer-model",
	Name:         vecHostName,
}

// vecDevice is the simulated device of the vectors.
var vecDevice = DeviceIdentity{
	Identifier:   vecDeviceID,
	Seed:         vecDeviceSeed,
	AltIRK:       vecDeviceIRK,
	BTAddr:       "AA:BB:CC:DD:EE:FF",
	MAC:          []byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
	Model:        "iPhone14,2",
	Name:         "Test iPhone",
	SerialNumber: "F2LXXXXXXXXX",
	UDID:         vecDeviceUDID,
}

var vecHandshake = HandshakeInfo{
	WireProtocolVersion:                 26,
	MinimumSupportedWireProtocolVersion: 8,
	Options: DeviceOptions{
		AllowsPairSetup: true, AllowsIncomingTunnelConnections: true, AllowsSharingSensitiveInfo: true,
	},
	Device: PeerDeviceInfo{Identifier: vecDeviceUDID, UDID: vecDeviceUDID, Name: "Test iPhone", Model: "iPhone14,2"},
}
