package safeplist

import (
	"strings"
	"testing"

	"howett.net/plist"
)

func TestUnmarshal(t *testing.T) {
	want := map[string]any{"MessageType": "Result", "Number": uint64(0)}
	for _, f := range []int{plist.XMLFormat, plist.BinaryFormat} {
		b, err := plist.Marshal(want, f)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", plist.FormatNames[f], err)
		}
		if got["MessageType"] != "Result" || got["Number"] != uint64(0) {
			t.Fatalf("%s: got %v", plist.FormatNames[f], got)
		}
	}
}

func TestRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":            "",
		"stray bytes":      "garbage",
		"openstep dict":    `{ MessageType = Result; }`,
		"gnustep":          `{ Number = <*I0>; }`,
		"truncated xml":    `<?xml version="1.0"?><plist version="1.0"><dict><key>a</key>`,
		"truncated binary": "bplist00\xd1\x01\x02",
	} {
		var v map[string]any
		err := Unmarshal([]byte(in), &v)
		if err == nil {
			t.Errorf("%s: decoded as %v; want an error", name, v)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
	// A text plist that fits the target still fails, by its format.
	var str string
	if err := Unmarshal([]byte(`"Result"`), &str); err == nil || !strings.Contains(err.Error(), "want XML or binary") {
		t.Errorf("OpenStep string: %v; want the format named", err)
	}
	var m map[string]any
	if err := Unmarshal([]byte(`{ MessageType = Result; }`), &m); err == nil || !strings.Contains(err.Error(), "want XML or binary") {
		t.Errorf("OpenStep dictionary: %v; want the format named", err)
	}
}

// FuzzUnmarshal: any input gives a value or an error, never a panic.
func FuzzUnmarshal(f *testing.F) {
	for _, fm := range []int{plist.XMLFormat, plist.BinaryFormat} {
		b, _ := plist.Marshal(map[string]any{"a": []any{uint64(1), "x", []byte{1}, true, 1.5}}, fm)
		f.Add(b)
	}
	f.Add([]byte("bplist00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m map[string]any
		_ = Unmarshal(b, &m)
		var s struct {
			A []any `plist:"a"`
		}
		_ = Unmarshal(b, &s)
	})
}
