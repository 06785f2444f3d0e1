package mercury

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/iosmux/iosmux/xpc"
)

// The Codable forms of docs/protocols/coredevice-schema.md §2. Each
// returns an xpc value; none converts between wire types.

// RawEnum is an enum with a String raw value (F2): the bare raw string.
func RawEnum(raw string) xpc.Value { return xpc.String(raw) }

// EnumCase is a case without payload of an auto-Codable enum (F3):
// {"<case>": {}}.
func EnumCase(name string) *xpc.Dict { return xpc.NewDict(name, xpc.NewDict()) }

// EnumCasePositional is a case with unlabeled associated values (F3a):
// {"<case>": {"_0": v0, "_1": v1, …}}.
func EnumCasePositional(name string, vs ...xpc.Value) *xpc.Dict {
	p := xpc.NewDict()
	for i, v := range vs {
		p.Set(fmt.Sprintf("_%d", i), v)
	}
	return xpc.NewDict(name, p)
}

// EnumCaseLabeled is a case with labeled associated values (F3b):
// {"<case>": {<label>: v, …}}.
func EnumCaseLabeled(name string, fields *xpc.Dict) *xpc.Dict {
	if fields == nil {
		fields = xpc.NewDict()
	}
	return xpc.NewDict(name, fields)
}

// OptionSet is an OptionSet struct (F5): its raw value as one int64, never
// {"rawValue": n}.
func OptionSet(raw int64) xpc.Value { return xpc.Int64(raw) }

// SetOf encodes a Swift Set (F6) as an array: duplicates (by encoding)
// removed and the elements sorted by their encoding, so the same set always
// encodes the same way and re-encoding is stable.
func SetOf(vs []xpc.Value) (xpc.Array, error) {
	type enc struct {
		b []byte
		v xpc.Value
	}
	list := make([]enc, 0, len(vs))
	for i, v := range vs {
		b, err := xpc.AppendValue(nil, v)
		if err != nil {
			return nil, fmt.Errorf("mercury: set element %d: %w", i, err)
		}
		list = append(list, enc{b, v})
	}
	slices.SortFunc(list, func(a, b enc) int { return bytes.Compare(a.b, b.b) })
	list = slices.CompactFunc(list, func(a, b enc) bool { return bytes.Equal(a.b, b.b) })
	out := make(xpc.Array, len(list))
	for i, e := range list {
		out[i] = e.v
	}
	return out, nil
}

// OptionalField sets key to v unless v is nil (F9): an absent Optional is
// an absent key, never an xpc null.
func OptionalField(d *xpc.Dict, key string, v xpc.Value) {
	if v != nil {
		d.Set(key, v)
	}
}

// Strings is an array of xpc strings.
func Strings(ss []string) xpc.Array {
	out := make(xpc.Array, len(ss))
	for i, s := range ss {
		out[i] = xpc.String(s)
	}
	return out
}
