package lockdown

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
	"testing/iotest"
)

// vector is one lockdown-framed plist of testdata/lp*.json
// (pymobiledevice3's build_plist output; the RSDCheckin of rsd.md §4.2).
type vector struct {
	Name  string         `json:"name"`
	Plist map[string]any `json:"plist"`
	Hex   string         `json:"hex"`
}

func loadVector(t *testing.T, name string) (vector, []byte) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	raw, err := hex.DecodeString(v.Hex)
	if err != nil {
		t.Fatal(err)
	}
	return v, raw
}

func TestFrameVectors(t *testing.T) {
	for _, name := range []string{"lp01_rsdcheckin_request", "lp02_rsdcheckin_reply", "lp03_startservice_reply"} {
		t.Run(name, func(t *testing.T) {
			v, raw := loadVector(t, name)
			payload, rest, err := ParseFrame(raw, 0)
			if err != nil || len(rest) != 0 {
				t.Fatalf("ParseFrame = %v, %d trailing bytes", err, len(rest))
			}
			m, err := ParseMessage(payload)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(map[string]any(m), v.Plist) {
				t.Errorf("message = %v, want %v", m, v.Plist)
			}
			if got := AppendFrame(nil, payload); !bytes.Equal(got, raw) {
				t.Errorf("AppendFrame = %x, want %x", got, raw)
			}
			// The stream reader agrees, however the bytes are split.
			for _, r := range []struct {
				name string
				rd   func([]byte) *bytes.Reader
			}{{"whole", bytes.NewReader}} {
				got, err := readFrame(iotest.OneByteReader(r.rd(raw)), 0)
				if err != nil || !bytes.Equal(got, payload) {
					t.Errorf("%s: readFrame one byte at a time = %v", r.name, err)
				}
				got, err = readFrame(iotest.HalfReader(r.rd(raw)), 0)
				if err != nil || !bytes.Equal(got, payload) {
					t.Errorf("%s: readFrame half reads = %v", r.name, err)
				}
			}
		})
	}
}

func TestFrameBounds(t *testing.T) {
	_, raw := loadVector(t, "lp01_rsdcheckin_request")
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short length", []byte{0, 0, 1}},
		{"zero length", []byte{0, 0, 0, 0}},
		{"truncated", raw[:len(raw)-1]},
		{"over limit", []byte{0x01, 0, 0, 0, 'x'}},
		{"4 GiB", []byte{0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ParseFrame(tt.in, 0); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseFrame(%x) = %v; want ErrMalformed", tt.in, err)
			}
		})
	}
	// A stream that ends inside a frame reports a truncated frame.
	if _, err := readFrame(iotest.DataErrReader(bytes.NewReader(raw[:40])), 0); err == nil {
		t.Error("readFrame of a cut frame succeeded")
	}
	bad := []struct {
		name    string
		payload []byte
	}{
		{"garbage", []byte("<plist><dict><key>Req")},
		{"text plist", []byte("{ Request = QueryType; }")},
		{"not a dict", []byte(`<?xml version="1.0"?><plist version="1.0"><string>x</string></plist>`)},
		{"bad bplist", []byte("bplist00\x00\x01")},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseMessage(tt.payload); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseMessage(%q) = %v; want ErrMalformed", tt.payload, err)
			}
		})
	}
}
