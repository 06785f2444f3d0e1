package tlv8

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

type vectorFile struct {
	Cases []struct {
		Name  string `json:"name"`
		Items []struct {
			Type  int    `json:"type"`
			Value string `json:"value"`
		} `json:"items"`
		Encoded string            `json:"encoded"`
		Decoded map[string]string `json:"decoded_concatenated"`
	} `json:"cases"`
}

func loadVectors(t testing.TB) vectorFile {
	t.Helper()
	raw, err := os.ReadFile("testdata/tlv8.json")
	if err != nil {
		t.Fatal(err)
	}
	var f vectorFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) == 0 {
		t.Fatal("no cases in testdata/tlv8.json")
	}
	return f
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// TestVectors checks decoding of every case, and for every case whose items
// are in canonical form (split at 255) that Append reproduces the bytes.
func TestVectors(t *testing.T) {
	for _, c := range loadVectors(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			enc := unhex(t, c.Encoded)
			got, err := Parse(enc)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(got) != len(c.Decoded) {
				t.Errorf("got %d types, want %d", len(got), len(c.Decoded))
			}
			for k, want := range c.Decoded {
				n, err := strconv.ParseUint(strings.TrimPrefix(k, "0x"), 16, 8)
				if err != nil {
					t.Fatal(err)
				}
				v, ok := got.Get(Type(n))
				if !ok || !bytes.Equal(v, unhex(t, want)) {
					t.Errorf("type %s: got %x (present %v), want %s", k, v, ok, want)
				}
			}

			// Re-encode by concatenating same-type runs, the way our encoder
			// would be called, and compare unless the case is decode-only.
			var b []byte
			var canonical = true
			for i := 0; i < len(c.Items); {
				typ := c.Items[i].Type
				var val []byte
				j := i
				for ; j < len(c.Items) && c.Items[j].Type == typ; j++ {
					v := unhex(t, c.Items[j].Value)
					if j+1 < len(c.Items) && c.Items[j+1].Type == typ && len(v) != MaxItem {
						canonical = false
					}
					val = append(val, v...)
				}
				b = Append(b, Type(typ), val)
				i = j
			}
			if len(c.Items) > 0 && canonical && !bytes.Equal(b, enc) {
				t.Errorf("Append: got %x, want %s", b, c.Encoded)
			}
		})
	}
}

func TestAppendSplits(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		sizes []int
	}{
		{"empty", 0, []int{0}},
		{"one", 1, []int{1}},
		{"254", 254, []int{254}},
		{"255", 255, []int{255}},
		{"256", 256, []int{255, 1}},
		{"384", 384, []int{255, 129}},
		{"510", 510, []int{255, 255}},
		{"511", 511, []int{255, 255, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := bytes.Repeat([]byte{0xAB}, tt.n)
			b := Append(nil, EncryptedData, v)
			items, err := Split(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != len(tt.sizes) {
				t.Fatalf("got %d items, want %d", len(items), len(tt.sizes))
			}
			for i, it := range items {
				if it.Type != EncryptedData || len(it.Value) != tt.sizes[i] {
					t.Errorf("item %d: got %v/%d, want %v/%d", i, it.Type, len(it.Value), EncryptedData, tt.sizes[i])
				}
			}
			got, _ := Parse(b)
			if !bytes.Equal(got[EncryptedData], v) {
				t.Errorf("round trip mismatch")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"lone type", "06"},
		{"length past end", "060201"},
		{"second item truncated", "0601010320aa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(unhex(t, tt.in))
			if !errors.Is(err, ErrTruncated) {
				t.Errorf("got %v, want ErrTruncated", err)
			}
		})
	}
}

func TestSeparatorAndUnknown(t *testing.T) {
	in := unhex(t, "0601ff"+"ff00"+"4002beef")
	v, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if sep, ok := v[Separator]; !ok || len(sep) != 0 {
		t.Errorf("separator: got %x, %v; want empty, true", sep, ok)
	}
	if got, _ := v.Get(Type(0x40)); !bytes.Equal(got, []byte{0xbe, 0xef}) {
		t.Errorf("unknown type: got %x", got)
	}
	if s, ok := v.Byte(State); !ok || s != 0xff {
		t.Errorf("Byte(State) = %x, %v", s, ok)
	}
	if _, ok := v.Byte(Type(0x40)); ok {
		t.Error("Byte on a two-byte item reported ok")
	}
}

func TestTruncatedPrefixes(t *testing.T) {
	for _, c := range loadVectors(t).Cases {
		enc := unhex(t, c.Encoded)
		for n := 0; n < len(enc); n++ {
			items, err := Split(enc[:n])
			if err != nil {
				continue
			}
			// A prefix that parses must end exactly on an item boundary.
			total := 0
			for _, it := range items {
				total += 2 + len(it.Value)
			}
			if total != n {
				t.Errorf("%s: prefix %d parsed %d bytes", c.Name, n, total)
			}
		}
	}
}

func TestTypeString(t *testing.T) {
	if State.String() != "STATE" || Type(0x77).String() != "TYPE_0x77" {
		t.Errorf("got %q %q", State.String(), Type(0x77).String())
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range loadVectors(f).Cases {
		f.Add(unhex(f, c.Encoded))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse(b)
		if err != nil {
			return
		}
		// Re-encode in a fixed order and parse again: same values.
		var enc []byte
		for typ := 0; typ < 256; typ++ {
			if val, ok := v[Type(typ)]; ok {
				enc = Append(enc, Type(typ), val)
			}
		}
		v2, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(v2) != len(v) {
			t.Fatalf("got %d types, want %d", len(v2), len(v))
		}
		for k, val := range v {
			if !bytes.Equal(v2[k], val) {
				t.Fatalf("type %v: got %x, want %x", k, v2[k], val)
			}
		}
	})
}
