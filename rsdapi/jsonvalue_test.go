package rsdapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Expected strings below are what CPython 3.12 prints for
// json.dumps(v) and json.dumps(v, separators=(",", ":"), ensure_ascii=False).
func TestEncodeJSONPythonStyles(t *testing.T) {
	tests := []struct {
		name          string
		v             value
		dumps, compct string
	}{
		{"object", object{{"a", int64(1)}, {"b", true}, {"c", nil}}, `{"a": 1, "b": true, "c": null}`, `{"a":1,"b":true,"c":null}`},
		{"nested", object{{"x", []value{int64(1), "y", object{}}}}, `{"x": [1, "y", {}]}`, `{"x":[1,"y",{}]}`},
		{"empty", object{}, `{}`, `{}`},
		{"list of str", []string{"a", "b"}, `["a", "b"]`, `["a","b"]`},
		{"escapes", "\"\\\n\r\t\b\f\x00\x1f/<>&", `"\"\\\n\r\t\b\f\u0000\u001f/<>&"`, `"\"\\\n\r\t\b\f\u0000\u001f/<>&"`},
		{"DEL", "\x7f", `"\u007f"`, "\"\x7f\""},
		{"BMP", "é\u2028", `"\u00e9\u2028"`, "\"é\u2028\""},
		{"astral", "😀", `"\ud83d\ude00"`, `"😀"`},
		{"invalid UTF-8", "a\xffb", `"a\ufffdb"`, "\"a\uFFFDb\""},
		{"number passthrough", jsonNumber("1.50"), `1.50`, `1.50`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(encodeJSON(tt.v, styleDumps)); got != tt.dumps {
				t.Errorf("dumps = %s, want %s", got, tt.dumps)
			}
			if got := string(encodeJSON(tt.v, styleCompact)); got != tt.compct {
				t.Errorf("compact = %s, want %s", got, tt.compct)
			}
		})
	}
}

func TestDecodeJSONKeepsOrder(t *testing.T) {
	in := `{"z": 1, "a": [true, null, "x", {"k": 2.5e3}], "m": {}, "z": 3}`
	v, err := decodeJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	// A repeated key keeps its first position with the last value, as
	// Python dicts and JS objects do.
	want := `{"z":3,"a":[true,null,"x",{"k":2.5e3}],"m":{}}`
	if got := string(encodeJSON(v, styleCompact)); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDecodeJSONRejects(t *testing.T) {
	for _, in := range []string{``, `{`, `{"a":1} x`, `[1,]`, `{1:2}`, strings.Repeat("[", 40) + strings.Repeat("]", 40)} {
		if _, err := decodeJSON([]byte(in)); err == nil {
			t.Errorf("decodeJSON(%q) succeeded", in)
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":null}]}`, `"x"`, `[true,false]`, `{"url":"http://h"}`, `1e5`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodeJSON(data)
		if err != nil {
			return
		}
		// Our encoding must be valid JSON that decodes to the same encoding.
		for _, st := range []style{styleDumps, styleCompact} {
			enc := encodeJSON(v, st)
			if !json.Valid(enc) {
				t.Fatalf("invalid output %q for %q", enc, data)
			}
			v2, err := decodeJSON(enc)
			if err != nil {
				t.Fatalf("re-decode %q: %v", enc, err)
			}
			if enc2 := encodeJSON(v2, st); !bytes.Equal(enc, enc2) {
				t.Fatalf("unstable: %q → %q", enc, enc2)
			}
		}
	})
}

func TestParseQuery(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{"udid=a&udid=b", map[string]string{"udid": "b"}, true},
		{"udid", map[string]string{"udid": ""}, true},
		{"a=1;b=2", map[string]string{"a": "1;b=2"}, true},
		{"a=x+y%20z&&", map[string]string{"a": "x y z"}, true},
		{"a=%E2%82%AC", map[string]string{"a": "€"}, true},
		{"a=%zz", nil, false},
		{"a=%4", nil, false},
		{"a=%C3", nil, false},
		{"a=\xff", nil, false},
		{strings.Repeat("a=1&", 65), nil, false},
	}
	for _, tt := range tests {
		got, err := parseQuery(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("parseQuery(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("parseQuery(%q) = %v, want %v", tt.in, got, tt.want)
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("parseQuery(%q)[%q] = %q, want %q", tt.in, k, got[k], v)
			}
		}
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"udid=abc", "udid=a%20b&ip=fe80::1%25en0&connection_type=usb", "x", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := parseQuery(s)
		if err != nil {
			return
		}
		for k, v := range q {
			if !strings.Contains(s, "%") && !strings.Contains(s, "+") && (!strings.Contains(s, k) || !strings.Contains(s, v)) {
				t.Fatalf("pair %q=%q not in %q", k, v, s)
			}
		}
	})
}

func FuzzUpstreamBody(f *testing.F) {
	for _, s := range []string{`{"url":"http://a:1"}`, `{}`, `[]`, `{"url":5}`, `{"url"`} {
		f.Add(s, "application/json")
	}
	f.Fuzz(func(t *testing.T, body, ctype string) {
		u, verr := upstreamBody(ctype, []byte(body))
		if verr == nil && !strings.Contains(body, "url") {
			t.Fatalf("accepted %q as url %q", body, u)
		}
		if verr != nil && !json.Valid(encodeJSON(verr, styleCompact)) {
			t.Fatalf("invalid error json for %q", body)
		}
	})
}

func FuzzParseListing(f *testing.F) {
	f.Add([]byte(`{"U":[{"tunnel-address":"fd00::1","tunnel-port":1,"interface":"x"}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"U":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseListing(data)
		if err != nil {
			return
		}
		for _, m := range l {
			if _, ok := m.val.([]value); !ok {
				t.Fatalf("entry %q is %T", m.key, m.val)
			}
		}
	})
}

func TestPyQuote(t *testing.T) {
	in := "http://h:1/cancel?udid=a b&x=é%"
	want := "http://h:1/cancel?udid=a%20b&x=%C3%A9%"
	if got := pyQuote(in); got != want {
		t.Errorf("pyQuote = %q, want %q", got, want)
	}
}
