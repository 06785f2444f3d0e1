package xpc

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// vector is the part of a testdata/*.json description the tests use.
type vector struct {
	Name    string `json:"name"`
	Hex     string `json:"hex"`
	Canon   string `json:"canonical_hex"`
	Wrapper struct {
		Flags     string `json:"flags"`
		BodyLen   int    `json:"body_length"`
		MessageID string `json:"message_id"`
	} `json:"wrapper"`
	Payload *struct {
		Object json.RawMessage `json:"object"`
	} `json:"payload"`
}

func loadVectors(t testing.TB) map[string]vector {
	t.Helper()
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]vector{}
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "h2_") {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v vector
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[v.Name] = v
	}
	if len(out) < 17 {
		t.Fatalf("found %d vectors, want at least 17", len(out))
	}
	return out
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// typed is the JSON typed tree of testdata (README "File formats").
type typed struct {
	Type    string          `json:"type"`
	Value   json.RawMessage `json:"value"`
	Bits    string          `json:"ieee754_bits"`
	Nanos   string          `json:"unix_nanoseconds"`
	Hex     string          `json:"hex"`
	Bytes   string          `json:"bytes_hex"`
	Items   []typed         `json:"items"`
	Entries []struct {
		Key   string `json:"key"`
		Value typed  `json:"value"`
	} `json:"entries"`
	MsgID  string `json:"msg_id"`
	Object *typed `json:"object"`
}

// fromTyped builds our Value from the independent JSON description.
func fromTyped(t testing.TB, j typed) Value {
	t.Helper()
	str := func() string {
		var s string
		if err := json.Unmarshal(j.Value, &s); err != nil {
			t.Fatalf("%s value %s: %v", j.Type, j.Value, err)
		}
		return s
	}
	switch j.Type {
	case "null":
		return Null{}
	case "bool":
		return Bool(string(j.Value) == "true")
	case "int64":
		n, err := strconv.ParseInt(str(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return Int64(n)
	case "uint64":
		n, err := strconv.ParseUint(str(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return Uint64(n)
	case "double":
		bits, err := strconv.ParseUint(strings.TrimPrefix(j.Bits, "0x"), 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		return Double(math.Float64frombits(bits))
	case "date":
		n, err := strconv.ParseInt(j.Nanos, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return Date(n)
	case "data":
		return Data(mustHex(t, j.Hex))
	case "string":
		return String(str())
	case "uuid":
		var u UUID
		copy(u[:], mustHex(t, j.Bytes))
		return u
	case "array":
		a := Array{}
		for _, it := range j.Items {
			a = append(a, fromTyped(t, it))
		}
		return a
	case "dictionary":
		d := &Dict{}
		for _, e := range j.Entries {
			d.entries = append(d.entries, Entry{Key: e.Key, Value: fromTyped(t, e.Value)})
		}
		return d
	case "file_transfer":
		id, err := strconv.ParseUint(j.MsgID, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return FileTransfer{ID: id, Object: fromTyped(t, *j.Object)}
	}
	t.Fatalf("unknown typed value %q", j.Type)
	return nil
}

// messageFromVector builds the message the JSON describes, independently of
// the hex.
func messageFromVector(t testing.TB, v vector) Message {
	t.Helper()
	flags, err := strconv.ParseUint(strings.TrimPrefix(v.Wrapper.Flags, "0x"), 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseUint(v.Wrapper.MessageID, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	m := Message{Flags: Flags(flags), ID: id}
	if v.Payload != nil {
		var j typed
		if err := json.Unmarshal(v.Payload.Object, &j); err != nil {
			t.Fatal(err)
		}
		m.Body = fromTyped(t, j).(*Dict)
	}
	return m
}

func encode(t testing.TB, m *Message) []byte {
	t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

// TestVectors checks every vector both ways: bytes -> Message -> bytes, and
// JSON description -> Message -> bytes.
func TestVectors(t *testing.T) {
	for name, v := range loadVectors(t) {
		t.Run(name, func(t *testing.T) {
			in := mustHex(t, v.Hex)
			want := in
			if v.Canon != "" {
				want = mustHex(t, v.Canon) // vector 15: accepted, re-encoded canonically
			}
			m, err := Decode(in)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := encode(t, &m); !bytes.Equal(got, want) {
				t.Errorf("decode+encode:\n got %x\nwant %x", got, want)
			}
			built := messageFromVector(t, v)
			if got := encode(t, &built); !bytes.Equal(got, want) {
				t.Errorf("json+encode:\n got %x\nwant %x", got, want)
			}
			if v.Canon != "" {
				m2, err := Decode(want)
				if err != nil {
					t.Fatalf("decode canonical: %v", err)
				}
				if !bytes.Equal(encode(t, &m2), want) {
					t.Errorf("canonical form does not round-trip")
				}
			}
		})
	}
}

func TestGoIOSFixtures(t *testing.T) {
	for _, f := range []string{"goios_xpc_dict.bin", "goios_xpc_empty_dict.bin"} {
		in, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(in)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if got := encode(t, &m); !bytes.Equal(got, in) {
			t.Errorf("%s: round trip differs", f)
		}
	}
}

// TestSpecInlineBytes checks the scalar table of xpc.md §3.3.
func TestSpecInlineBytes(t *testing.T) {
	u, _ := ParseUUID("6f1d0e8a-3b2c-4d5e-8f90-a1b2c3d4e5f6")
	tests := []struct {
		name string
		v    Value
		hex  string
	}{
		{"null", Null{}, "00100000"},
		{"true", Bool(true), "0020000001000000"},
		{"false", Bool(false), "0020000000000000"},
		{"int64 -1", Int64(-1), "00300000ffffffffffffffff"},
		{"int64 7", Int64(7), "003000000700000000000000"},
		{"uint64 7", Uint64(7), "004000000700000000000000"},
		{"uint64 max", Uint64(math.MaxUint64), "00400000ffffffffffffffff"},
		{"double 1.5", Double(1.5), "00500000000000000000f83f"},
		{"date", Date(1700000000123000000), "00700000c0d47e3dfe9c9717"},
		{"data", Data{0, 1, 2}, "008000000300000000010200"},
		{"string empty", String(""), "009000000100000000000000"},
		{"string a", String("a"), "009000000200000061000000"},
		{"string abc", String("abc"), "009000000400000061626300"},
		{"string abcd", String("abcd"), "00900000050000006162636400000000"},
		{"uuid", u, "00a000006f1d0e8a3b2c4d5e8f90a1b2c3d4e5f6"},
		{"empty array", Array{}, "00e000000400000000000000"},
		{"empty dict", NewDict(), "00f000000400000000000000"},
		{"file transfer", NewFileTransfer(7, 1234), "00a001000700000000000000" + "00f00000140000000100000073000000" + "00400000d204000000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendValue(nil, tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != tt.hex {
				t.Errorf("encode: got %x, want %s", got, tt.hex)
			}
			back, err := DecodeValue(mustHex(t, tt.hex))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if back.Kind() != tt.v.Kind() {
				t.Errorf("decode kind: got %v, want %v", back.Kind(), tt.v.Kind())
			}
			again, _ := AppendValue(nil, back)
			if !bytes.Equal(again, got) {
				t.Errorf("re-encode: got %x, want %x", again, got)
			}
		})
	}
}

func TestIntegerTypesStayDistinct(t *testing.T) {
	d := NewDict("i", Int64(7), "u", Uint64(7), "id", UUID{1}, "s", String("01000000-0000-0000-0000-000000000000"))
	m := Message{Flags: FlagsMsg, Body: d}
	back, err := Decode(encode(t, &m))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := back.Body.Get("i").(Int64); !ok {
		t.Errorf("i: got %T, want Int64", back.Body.Get("i"))
	}
	if _, ok := back.Body.Get("u").(Uint64); !ok {
		t.Errorf("u: got %T, want Uint64", back.Body.Get("u"))
	}
	if _, ok := back.Body.Get("id").(UUID); !ok {
		t.Errorf("id: got %T, want UUID", back.Body.Get("id"))
	}
	if back.Body.Int64("u") != 0 || back.Body.Uint64("i") != 0 {
		t.Errorf("typed accessors must not convert between int64 and uint64")
	}
	if n, ok := back.Body.Integer("u"); !ok || n != 7 {
		t.Errorf("Integer(u): got %d %v, want 7 true", n, ok)
	}
}

func TestKernelObjects(t *testing.T) {
	d := NewDict("p", Pointer{}, "fd", FD(3), "shm", Shmem{Length: 4096, Unknown: 1})
	m := Message{Flags: FlagsMsg, Body: d}
	b := encode(t, &m)
	if _, err := Decode(b); err == nil {
		t.Fatal("default decoder accepted kernel objects")
	}
	back, err := DecodeOptions{KernelObjects: true}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encode(t, &back), b) {
		t.Error("kernel objects do not round-trip")
	}
}

func TestOpaqueIsEncodedButRejected(t *testing.T) {
	b, err := AppendValue(nil, Opaque{Type: KindEndpoint, Body: []byte{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(b) != "0020010001020300" {
		t.Errorf("got %x", b)
	}
	_, err = DecodeValue(b)
	var se *SyntaxError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "endpoint") {
		t.Errorf("got %v, want a syntax error naming endpoint", err)
	}
}

func TestEncodeRejects(t *testing.T) {
	for name, v := range map[string]Value{
		"nul in string": String("a\x00b"),
		"bad utf8":      String("\xff"),
		"nul in key":    NewDict("a\x00", Null{}),
		"nil dict":      (*Dict)(nil),
		"nil in array":  Array{nil},
	} {
		if _, err := AppendValue(nil, v); err == nil {
			t.Errorf("%s: encoded without error", name)
		}
	}
	deep := Value(Array{})
	for range DefaultMaxDepth + 1 {
		deep = Array{deep}
	}
	if _, err := AppendValue(nil, deep); err == nil {
		t.Error("too deep: encoded without error")
	}
}

// TestTruncatedPrefixes: every strict prefix of every vector fails cleanly.
func TestTruncatedPrefixes(t *testing.T) {
	for name, v := range loadVectors(t) {
		in := mustHex(t, v.Hex)
		for n := 0; n < len(in); n++ {
			if _, err := Decode(in[:n]); !errors.Is(err, ErrTruncated) {
				t.Fatalf("%s: prefix %d: got %v, want ErrTruncated", name, n, err)
			}
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	v01 := "920bb029010000001400000000000000000000000000000042371342050000000" + "0f000000400000000000000"
	tests := []struct {
		name, hex string
		is        error
	}{
		{"bad magic", "930bb029" + v01[8:], nil},
		{"bad payload magic", strings.Replace(v01, "42371342", "42371343", 1), nil},
		{"bad version", strings.Replace(v01, "4237134205", "4237134206", 1), nil},
		{"body too short", "920bb02901000000040000000000000000000000000000004237134205000000", nil},
		{"trailing", v01 + "00", nil},
		{"too large", "920bb0290100000000000000010000000000000000000000", ErrTooLarge},
		{"root not dict", "920bb02901000000" + "0c00000000000000" + "0000000000000000" + "4237134205000000" + "00100000", nil},
		{"dict count too big", "920bb02901000000140000000000000000000000000000004237134205000000" + "00f0000004000000ffffffff", nil},
		{"dict length short", "920bb02901000000140000000000000000000000000000004237134205000000" + "00f0000000000000" + "00000000", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(mustHex(t, tt.hex))
			if err == nil {
				t.Fatal("decoded without error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("got %v, want %v", err, tt.is)
			}
			if !strings.HasPrefix(err.Error(), "xpc: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	valueTests := map[string]string{
		"string no nul":      "009000000200000061620000" + "",
		"string bad utf8":    "0090000002000000ff000000",
		"string len past":    "0090000009000000610000000",
		"array count big":    "00e0000004000000ffffff7f",
		"array length wrong": "00e000000c0000000100000000100000",
		"unknown tag":        "00d00000",
		"key without nul":    "00f000000c0000000100000061616161",
		"fd by default":      "00b0000003000000",
	}
	for name, h := range valueTests {
		if len(h)%2 == 1 {
			h += "0"
		}
		if _, err := DecodeValue(mustHex(t, h)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	v := Value(NewDict())
	for range 10 {
		v = Array{v}
	}
	b, err := AppendValue(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (DecodeOptions{MaxDepth: 5}).DecodeValue(b); err == nil {
		t.Error("MaxDepth 5 accepted depth 11")
	}
	if _, err := (DecodeOptions{MaxDepth: 11}).DecodeValue(b); err != nil {
		t.Errorf("MaxDepth 11: %v", err)
	}
}

func TestDictAccessors(t *testing.T) {
	u, _ := NewRandomUUID(nil)
	d := NewDict("s", String("x"), "b", Bool(true), "n", Int64(-2), "u", Uint64(3),
		"f", Double(0.5), "t", Date(9), "raw", Data{1}, "id", u,
		"sub", NewDict("k", String("v")), "arr", Array{String("a"), Int64(1), String("b")})
	if d.String("s") != "x" || !d.Bool("b") || d.Int64("n") != -2 || d.Uint64("u") != 3 ||
		d.Double("f") != 0.5 || d.Date("t") != 9 || !bytes.Equal(d.Data("raw"), []byte{1}) ||
		d.UUID("id") != u || d.Dict("sub").String("k") != "v" || len(d.Array("arr")) != 3 {
		t.Error("typed accessors returned wrong values")
	}
	if got := d.Array("arr").Strings(); strings.Join(got, ",") != "a,b" {
		t.Errorf("Strings: got %v", got)
	}
	if d.Dict("missing").String("x") != "" || d.String("n") != "" {
		t.Error("missing or mistyped keys must read as zero")
	}
	d.Set("s", String("y")).Set("new", Null{})
	if d.String("s") != "y" || d.Len() != 11 || d.Keys()[10] != "new" {
		t.Errorf("Set: got %v", d.Keys())
	}
	d.Delete("s")
	if d.Has("s") || d.Len() != 10 {
		t.Error("Delete failed")
	}
	if u.IsZero() || u[6]>>4 != 4 || u[8]>>6 != 2 {
		t.Errorf("random uuid %v is not version 4", u)
	}
	p, err := ParseUUID(strings.ToUpper(u.String()))
	if err != nil || p != u {
		t.Errorf("ParseUUID(upper): %v %v", p, err)
	}
}

func TestDuplicateKeysLastWins(t *testing.T) {
	// {"a": 1, "a": 2} as Apple-style bytes: decoders keep the last value,
	// and re-encoding keeps both entries (byte-exact).
	h := "00f0000024000000020000006100000000300000010000000000000061000000003000000200000000000000"
	v, err := DecodeValue(mustHex(t, h))
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*Dict)
	if d.Int64("a") != 2 || d.Len() != 2 {
		t.Errorf("got a=%d len=%d, want 2 2", d.Int64("a"), d.Len())
	}
	b, _ := AppendValue(nil, d)
	if hex.EncodeToString(b) != h {
		t.Errorf("re-encode: got %x", b)
	}
}

func TestFlagsView(t *testing.T) {
	tests := []struct {
		f    Flags
		typ  MessageType
		name string
	}{
		{FlagsHeader, TypeHeader, "0x00000001 HEADER"},
		{FlagsPingMsg, TypePing, "0x00000201 PING"},
		{FlagsRequest, TypeMsg, "0x00010101 MSG|WANTS_REPLY"},
		{FlagsReplyOpen, TypeHeader, "0x00400001 HEADER|INIT_HANDSHAKE"},
	}
	for _, tt := range tests {
		if tt.f.Type() != tt.typ || tt.f.Version() != 1 || tt.f.String() != tt.name {
			t.Errorf("%#x: got %v %d %q", uint32(tt.f), tt.f.Type(), tt.f.Version(), tt.f.String())
		}
	}
}
