package pairing

import (
	"encoding/base64"
	"encoding/json"
	"math"
)

// A tree is the transport-neutral form of an envelope (remotepairing.md
// §1.1): the value one transport decodes from its wire format and another
// encodes into its own. Its values are
//
//	map[string]any, []any, string, bool, int64, uint64, float64, []byte
//
// Integers keep their signedness so the XPC transport can write int64 for
// wireProtocolVersion and uint64 for sequenceNumber (remotepairing.md
// §1.2). JSON has no byte strings: the RPPairing transport writes []byte as base64 and decodes
// it back as a string, so readers go through bytesOf, which accepts both.
type tree = map[string]any

// dictAt walks a path of dictionary keys.
func dictAt(v any, path ...string) (tree, bool) {
	for _, k := range path {
		m, ok := v.(tree)
		if !ok {
			return nil, false
		}
		v = m[k]
	}
	m, ok := v.(tree)
	return m, ok
}

// soleKey returns the only entry of a one-key dictionary: the Swift enum
// case encodings of remotepairing.md §1.1 (message, request, event names).
func soleKey(m tree) (string, any, bool) {
	if len(m) != 1 {
		return "", nil, false
	}
	for k, v := range m {
		return k, v, true
	}
	return "", nil, false
}

// bytesOf accepts raw bytes (XPC data) or a standard base64 string (JSON).
func bytesOf(v any) ([]byte, bool) {
	switch x := v.(type) {
	case []byte:
		return x, true
	case string:
		b, err := base64.StdEncoding.DecodeString(x)
		return b, err == nil
	}
	return nil, false
}

// intOf accepts any integer representation a transport may produce.
func intOf(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case int:
		return int64(x), true
	case float64:
		if x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, true
		}
	}
	return 0, false
}

func stringOf(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

func boolOf(v any) (bool, bool) {
	b, ok := v.(bool)
	return b, ok
}

// normalizeJSON converts the json.Number values of a decoded JSON document
// into int64, uint64 or float64, so trees from every transport look alike.
func normalizeJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeJSON(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalizeJSON(e)
		}
		return x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		var u uint64
		if err := json.Unmarshal([]byte(x), &u); err == nil {
			return u
		}
		f, _ := x.Float64()
		return f
	}
	return v
}
