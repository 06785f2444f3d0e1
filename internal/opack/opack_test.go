package opack

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

type vectorCase struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
	Opack string          `json:"opack"`
}

func loadCases(t testing.TB) []vectorCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/opack.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []vectorCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) == 0 {
		t.Fatal("no cases")
	}
	return f.Cases
}

// fromJSON turns a vector's JSON value into our Go model, keeping dictionary
// key order ({"$data": hex} is a byte string).
func fromJSON(t testing.TB, raw []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := readJSON(dec)
	if err != nil {
		t.Fatalf("vector value: %v", err)
	}
	return v
}

func readJSON(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := tok.(type) {
	case json.Delim:
		if x == '[' {
			out := []any{}
			for dec.More() {
				v, err := readJSON(dec)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			_, err := dec.Token()
			return out, err
		}
		d := Dict{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := readJSON(dec)
			if err != nil {
				return nil, err
			}
			d = append(d, Pair{Key: k.(string), Value: v})
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		if len(d) == 1 && d[0].Key == "$data" {
			return hex.DecodeString(d[0].Value.(string))
		}
		return d, nil
	case json.Number:
		return strconv.ParseUint(x.String(), 10, 64)
	default:
		return x, nil
	}
}

func TestVectors(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			want, err := hex.DecodeString(c.Opack)
			if err != nil {
				t.Fatal(err)
			}
			v := fromJSON(t, c.Value)
			got, err := Marshal(v)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Marshal:\n got %x\nwant %x", got, want)
			}
			back, err := Unmarshal(want)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(back, v) {
				t.Errorf("Unmarshal: got %#v, want %#v", back, v)
			}
		})
	}
}

func TestDecodeOtherForms(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want any
	}{
		{"null", "04", Null{}},
		{"uuid", "05000102030405060708090a0b0c0d0e0f", UUID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}},
		{"uint16", "310201", uint64(0x0102)},
		{"float32 LE", "350000803f", float64(1)},
		{"float64 LE", "36000000000000f03f", float64(1)},
		{"date", "06000000000000f03f", Date(1)},
		{"string 2-byte LE length", "62030061 6263", "abc"},
		{"string 4-byte LE length", "630100000041", "A"},
		{"string 8-byte LE length", "64010000000000000041", "A"},
		{"data 2-byte LE length", "920100ff", []byte{0xff}},
		{"var array", "df090a03", []any{uint64(1), uint64(2)}},
		{"var dict one terminator", "ef416109" + "03", Dict{{"a", uint64(1)}}},
		{"var dict two terminators", "ef416109" + "0303", Dict{{"a", uint64(1)}}},
		{"back-reference", "d2" + "4161" + "a0", []any{"a", "a"}},
		{"explicit back-reference", "d3" + "3028" + "4162" + "c101", []any{uint64(40), "b", "b"}},
		{"small int not numbered", "d3" + "09" + "4163" + "a0", []any{uint64(1), "c", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := hex.DecodeString(strings.ReplaceAll(tt.in, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Unmarshal(in)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrTruncated},
		{"short string", "4361", ErrTruncated},
		{"huge length", "64ffffffffffffffff", ErrTruncated},
		{"dict missing value", "e14161", ErrTruncated},
		{"non-string key", "e10909", ErrInvalid},
		{"bad utf8", "41ff", ErrInvalid},
		{"unknown tag", "07", ErrInvalid},
		{"dangling reference", "a0", ErrInvalid},
		{"trailing", "0909", ErrTrailing},
		{"unterminated var array", "df09", ErrTruncated},
		{"deep nesting", strings.Repeat("d1", 100) + "09", ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, _ := hex.DecodeString(tt.in)
			_, err := Unmarshal(in)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeSubset(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
		err  error
	}{
		{"int", 7, "0f", nil},
		{"int64 max", int64(math.MaxInt64), "33ffffffffffffff7f", nil},
		{"uint32 max", uint32(math.MaxUint32), "32ffffffff", nil},
		{"negative", -1, "", ErrUnsupported},
		{"long string", strings.Repeat("x", 256), "", ErrUnsupported},
		{"float", 1.5, "", ErrUnsupported},
		{"15 entries", make([]any, 15), "", ErrUnsupported},
		{"map", map[string]any{}, "", ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err: got %v, want %v", err, tt.err)
			}
			if err == nil && hex.EncodeToString(got) != tt.want {
				t.Errorf("got %x, want %s", got, tt.want)
			}
		})
	}
}

func TestTruncatedVectors(t *testing.T) {
	for _, c := range loadCases(t) {
		full, _ := hex.DecodeString(c.Opack)
		for n := 0; n < len(full); n++ {
			if _, err := Unmarshal(full[:n]); err == nil {
				t.Errorf("%s: prefix of %d/%d bytes decoded", c.Name, n, len(full))
			}
		}
	}
}

func TestDictAccessors(t *testing.T) {
	d := Dict{{"s", "x"}, {"b", []byte{1}}}
	if s, ok := d.String("s"); !ok || s != "x" {
		t.Errorf("String: %q %v", s, ok)
	}
	if _, ok := d.String("b"); ok {
		t.Error("String on data reported ok")
	}
	if b, ok := d.Bytes("b"); !ok || !bytes.Equal(b, []byte{1}) {
		t.Errorf("Bytes: %x %v", b, ok)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, c := range loadCases(f) {
		b, _ := hex.DecodeString(c.Opack)
		f.Add(b)
	}
	f.Add([]byte{0xef, 0x41, 0x61, 0xa0, 0x03, 0x03})
	f.Add([]byte{0xdf, 0x05, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0xa0, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Unmarshal(b)
		if err != nil {
			return
		}
		enc, err := Marshal(v)
		if err != nil {
			return // outside the encodable subset
		}
		v2, err := Unmarshal(enc)
		if err != nil {
			t.Fatalf("re-decode of %x: %v", enc, err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip: %#v != %#v", v, v2)
		}
		enc2, _ := Marshal(v2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %x != %x", enc, enc2)
		}
	})
}
