package lockdown

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"howett.net/plist"
)

func frameSeeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, name := range []string{"lp01_rsdcheckin_request", "lp02_rsdcheckin_reply", "lp03_startservice_reply"} {
		b, err := os.ReadFile("testdata/" + name + ".json")
		if err != nil {
			f.Fatal(err)
		}
		var v vector
		if err := json.Unmarshal(b, &v); err != nil {
			f.Fatal(err)
		}
		raw, _ := hex.DecodeString(v.Hex)
		out = append(out, raw)
	}
	for _, m := range []map[string]any{
		{"Request": "GetValue", "Value": map[string]any{"ProductVersion": "17.5", "UniqueChipID": uint64(7), "DevicePublicKey": []byte("pem"), "List": []any{uint64(1), true}}},
		{"Request": "StartService", "Port": uint64(49152), "EnableServiceSSL": true, "Service": CoreDeviceProxy},
		{"Request": "StartSession", "Error": CodeInvalidHostID},
	} {
		for _, format := range []int{plist.XMLFormat, plist.BinaryFormat} {
			p, err := plist.Marshal(m, format)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, AppendFrame(nil, p))
		}
	}
	return out
}

// FuzzParseFrame covers the framing and message decoding every reply goes
// through; what decodes must re-encode and decode to the same message.
func FuzzParseFrame(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, rest, err := ParseFrame(b, 0)
		if err != nil {
			return
		}
		if len(payload)+len(rest)+4 != len(b) {
			t.Fatalf("frame split lost bytes")
		}
		m, err := ParseMessage(payload)
		if err != nil {
			return
		}
		m.String("Request")
		m.Uint("Port")
		m.Dict("Value")
		if !validUTF8(m) {
			return // encoders replace invalid UTF-8; no round trip to check
		}
		// Binary: XML cannot carry every string a binary plist can.
		enc, err := plist.Marshal(map[string]any(m), plist.BinaryFormat)
		if err != nil {
			return // e.g. a nil inside an array: not re-encodable, not our bug
		}
		m2, err := ParseMessage(enc)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(m), normalize(m2)) {
			t.Fatalf("round trip changed the message:\n%v\n%v", m, m2)
		}
	})
}

// normalize maps integer types and dates so the comparison ignores the
// signed/unsigned choice and the decoder's date precision.
func normalize(v any) any {
	switch x := v.(type) {
	case Message:
		return normalize(map[string]any(x))
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case int64:
		return uint64(x)
	case time.Time:
		// howett.net/plist stores dates as float seconds since 2001 and
		// does not round-trip far-off dates exactly; not ours to check.
		return "date"
	case float64:
		if x != x {
			return "NaN"
		}
	}
	return v
}

// FuzzDeviceRequest drives the device role's request handler with decoded
// input, outside a session and inside one.
func FuzzDeviceRequest(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s[4:])
	}
	rec, err := NewPairRecord(nil, PublicKeyPEM(&testKey(f, 0).PublicKey), "H", "B", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range []map[string]any{
		{"Request": "Pair", "PairRecord": rec.public(), "HostName": "h"},
		{"Request": "ValidatePair", "PairRecord": rec.public()},
		{"Request": "SetValue", "Domain": "d", "Key": "k", "Value": "v"},
		{"Request": "GetValue", "Domain": "d"},
	} {
		p, _ := plist.Marshal(m, plist.XMLFormat)
		f.Add(p)
	}
	key := testKey(f, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		// A fresh device per input, so state from earlier inputs (values,
		// pairings) neither accumulates nor hides a crash's cause.
		dev, err := NewServer(ServerConfig{Values: map[string]any{"ProductVersion": "17.5"}, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		name, _ := m.String("Request")
		for _, session := range []string{"", "S"} {
			c := &devConn{d: dev, session: session}
			rep, _ := c.handle(name, m)
			if rep == nil {
				t.Fatal("nil reply")
			}
			if _, err := encodeFrame(map[string]any(rep)); err != nil && !isUnencodable(m) {
				t.Fatalf("reply does not encode: %v", err)
			}
		}
	})
}

// isUnencodable: a request whose values cannot be re-encoded may be
// echoed back by GetValue after a SetValue; that is the input's fault.
func isUnencodable(m Message) bool {
	_, err := plist.Marshal(map[string]any(m), plist.BinaryFormat)
	return err != nil
}

// validUTF8 reports whether every string and key inside v is valid UTF-8.
func validUTF8(v any) bool {
	switch x := v.(type) {
	case string:
		return utf8.ValidString(x)
	case Message:
		return validUTF8(map[string]any(x))
	case map[string]any:
		for k, e := range x {
			if !utf8.ValidString(k) || !validUTF8(e) {
				return false
			}
		}
	case []any:
		for _, e := range x {
			if !validUTF8(e) {
				return false
			}
		}
	}
	return true
}
