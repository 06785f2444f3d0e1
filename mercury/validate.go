package mercury

import (
	"bytes"
	"fmt"
	"math"
	"strings"

	"github.com/iosmux/iosmux/xpc"
)

// ErrorKind is the class of a decoding error, named as Swift's
// DecodingError cases (plus Unverifiable, ours).
type ErrorKind uint8

const (
	KeyNotFound   ErrorKind = iota + 1 // a required key is absent
	ValueNotFound                      // a required value is absent or null
	TypeMismatch                       // the wire type is not the one the Swift type decodes from
	DataCorrupted                      // right wire type, unusable content
	// Unverifiable: the value uses a type whose encoding was never
	// captured (or an encoding never observed, such as null for an
	// Optional), so nobody can say whether CDS accepts it. iosmux treats
	// it as a failure: it never sends what it cannot judge.
	Unverifiable
)

func (k ErrorKind) String() string {
	switch k {
	case KeyNotFound:
		return "keyNotFound"
	case ValueNotFound:
		return "valueNotFound"
	case TypeMismatch:
		return "typeMismatch"
	case DataCorrupted:
		return "dataCorrupted"
	case Unverifiable:
		return "unverifiable"
	}
	return fmt.Sprintf("ErrorKind(%d)", uint8(k))
}

// DecodingError is the first error Validate found, in the terms Apple's
// decoder logs (subsystem com.apple.dt.coredevice).
type DecodingError struct {
	Kind ErrorKind
	// Path is the coding path: for KeyNotFound the container the key is
	// missing from, otherwise the value at fault.
	Path []string
	// Key is the missing key (KeyNotFound, and ValueNotFound of an
	// envelope key); Keys names its CodingKeys type when known.
	Key  string
	Keys string
	// Type is the Swift type the decoder wanted (TypeMismatch,
	// ValueNotFound, DataCorrupted).
	Type string
	// Found is the libxpc class found instead (TypeMismatch), e.g.
	// "OS_xpc_uint64".
	Found string
	// Msg is the debug description.
	Msg string
}

func (e *DecodingError) Error() string {
	var b strings.Builder
	b.WriteString("mercury: ")
	b.WriteString(e.Kind.String())
	switch {
	case e.Kind == KeyNotFound && e.Keys != "":
		fmt.Fprintf(&b, "(%s.%s)", e.Keys, e.Key)
	case e.Kind == KeyNotFound:
		fmt.Fprintf(&b, "(%q)", e.Key)
	case e.Type != "":
		fmt.Fprintf(&b, "(%s)", e.Type)
	case e.Key != "":
		fmt.Fprintf(&b, "(%q)", e.Key)
	}
	fmt.Fprintf(&b, " at %s", e.PathString())
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	return b.String()
}

// PathString is Path joined with dots ("" for the root).
func (e *DecodingError) PathString() string {
	if len(e.Path) == 0 {
		return "<root>"
	}
	return strings.Join(e.Path, ".")
}

// xpcClass is the libxpc class name Apple's messages use for a wire type.
func xpcClass(v xpc.Value) string {
	if v == nil {
		return "nothing"
	}
	switch v.Kind() {
	case xpc.KindDict:
		return "OS_xpc_dictionary"
	}
	return "OS_xpc_" + v.Kind().String()
}

// swiftShort is a Swift type name without its module, as in "Expected to
// decode Int64".
func swiftShort(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 && !strings.Contains(name, "<") {
		return name[i+1:]
	}
	return name
}

func with(path []string, step string) []string {
	out := make([]string, len(path), len(path)+1)
	copy(out, path)
	return append(out, step)
}

// Validate reports whether Apple's Codable bridge would decode v as t, and
// if not, the first error it would log. It mirrors the decoder's order as
// the iteration trail shows it (docs/protocols/coredevice-schema.md
// §4.1): within a struct, fields read through a nested
// container (structs, enums, arrays, dictionaries) are decoded before
// single-value fields, each group in declaration order; unknown keys are
// ignored; an auto-Codable enum counts only keys that are its case names
// and wants exactly one.
func Validate(t *Type, v xpc.Value) error {
	if e := validate(t, v, nil); e != nil {
		return e
	}
	return nil
}

func validate(t *Type, v xpc.Value, path []string) *DecodingError {
	mismatch := func(typ, msg string) *DecodingError {
		return &DecodingError{Kind: TypeMismatch, Path: path, Type: typ, Found: xpcClass(v), Msg: msg}
	}
	expected := func(typ string) *DecodingError {
		return mismatch(typ, fmt.Sprintf("Expected to decode %s but found a %s instead.", swiftShort(typ), xpcClass(v)))
	}
	switch t.Form {
	case FormUnknown:
		return &DecodingError{Kind: Unverifiable, Path: path, Type: t.Name,
			Msg: "the encoding of " + t.Name + " was never captured"}
	case FormScalar:
		if v == nil || v.Kind() != t.Kind {
			return expected(t.Name)
		}
		if t.Float32 {
			f := float64(v.(xpc.Double))
			if !math.IsNaN(f) && float64(float32(f)) != f {
				return &DecodingError{Kind: DataCorrupted, Path: path, Type: t.Name,
					Msg: fmt.Sprintf("Parsed number <%v> does not fit in Float.", f)}
			}
		}
		return nil
	case FormOptionSet:
		if _, ok := v.(xpc.Int64); !ok {
			return expected("Swift.Int64")
		}
		return nil
	case FormRawEnum:
		s, ok := v.(xpc.String)
		if !ok {
			return expected("Swift.String")
		}
		for _, r := range t.Raw {
			if r.Value == string(s) {
				return nil
			}
		}
		return &DecodingError{Kind: DataCorrupted, Path: path, Type: t.Name,
			Msg: fmt.Sprintf("Cannot initialize %s from invalid String value %s", swiftShort(t.Name), string(s))}
	case FormArray, FormSet:
		a, ok := v.(xpc.Array)
		if !ok {
			return mismatch(t.Name, fmt.Sprintf("Expected to decode Array<Any> but found a %s instead.", xpcClass(v)))
		}
		for i, e := range a {
			if err := validate(t.Elem, e, with(path, fmt.Sprintf("Index %d", i))); err != nil {
				return err
			}
		}
		return nil
	case FormMap:
		d, ok := v.(*xpc.Dict)
		if !ok {
			return mismatch(t.Name, fmt.Sprintf("Expected to decode Dictionary<String, Any> but found a %s instead.", xpcClass(v)))
		}
		for k, e := range d.All() {
			if err := validate(t.Elem, e, with(path, k)); err != nil {
				return err
			}
		}
		return nil
	case FormVoid:
		if _, ok := v.(*xpc.Dict); !ok {
			return mismatch(t.Name, "dictionary required")
		}
		return nil
	case FormEnum:
		d, ok := v.(*xpc.Dict)
		if !ok {
			return mismatch(t.Keys, "dictionary required")
		}
		var found []Case
		for k := range d.All() {
			if c, ok := t.Case(k); ok {
				found = append(found, c)
			}
		}
		if len(found) != 1 {
			return &DecodingError{Kind: TypeMismatch, Path: path, Type: t.Name, Found: xpcClass(v),
				Msg: "Invalid number of keys, expected one"}
		}
		c := found[0]
		return validate(c.Payload, d.Get(c.Name), with(path, c.Name))
	case FormStruct:
		d, ok := v.(*xpc.Dict)
		if !ok {
			return mismatch(t.Name, "dictionary required")
		}
		for pass := range 2 {
			for _, f := range t.Fields {
				if f.Type.container() != (pass == 0) {
					continue
				}
				fv, ok := d.Lookup(f.Key)
				if !ok {
					if f.Optional {
						continue
					}
					return &DecodingError{Kind: KeyNotFound, Path: path, Key: f.Key, Keys: t.keysName(),
						Msg: fmt.Sprintf("No value associated with key %s.", f.Key)}
				}
				if _, null := fv.(xpc.Null); null {
					if f.Optional {
						return &DecodingError{Kind: Unverifiable, Path: with(path, f.Key), Type: f.Type.Name,
							Msg: "null for an Optional was never observed; omit the key"}
					}
					return &DecodingError{Kind: ValueNotFound, Path: with(path, f.Key), Type: f.Type.Name,
						Msg: fmt.Sprintf("Expected %s value but found null instead.", swiftShort(f.Type.Name))}
				}
				if err := validate(f.Type, fv, with(path, f.Key)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return &DecodingError{Kind: Unverifiable, Path: path, Type: t.Name, Msg: "unhandled form"}
}

// keysName is the CodingKeys type a struct's keyNotFound names.
func (t *Type) keysName() string {
	if strings.HasSuffix(t.Name, "CodingKeys") {
		return t.Name
	}
	return swiftShort(t.Name) + ".CodingKeys"
}

// Envelope keys (docs/protocols/coredevice-schema.md §1.1).
const (
	KeyActionIdentifier     = "CoreDevice.actionIdentifier"
	KeyInvocationIdentifier = "CoreDevice.invocationIdentifier"
	KeyDeviceIdentifier     = "CoreDevice.deviceIdentifier"
	KeyCoreDeviceVersion    = "CoreDevice.coreDeviceVersion"
	KeyInput                = "CoreDevice.input"
	KeyOutput               = "CoreDevice.output"
)

// echoedKeys are copied from the request into the reply, typed values
// unchanged.
var echoedKeys = []string{KeyActionIdentifier, KeyInvocationIdentifier, KeyDeviceIdentifier, KeyCoreDeviceVersion}

// ValidateReply judges a whole action reply for req whose Output is out:
// the echoed keys must equal the request's (kind-sensitive), and
// CoreDevice.output must decode as out. Mercury's envelope adds two rules
// of its own that the trail shows: a missing output is
// valueNotFound("CoreDevice.output"), and an empty dictionary where a
// non-Void Output is expected is dataCorrupted (read as a Void box).
func ValidateReply(req, reply *xpc.Dict, out *Type) error {
	if reply == nil {
		return &DecodingError{Kind: TypeMismatch, Type: "Mercury.XPCDictionary", Found: "nothing", Msg: "dictionary required"}
	}
	for _, k := range echoedKeys {
		want, _ := req.Lookup(k)
		got, ok := reply.Lookup(k)
		if !ok || !SameValue(want, got) {
			return &DecodingError{Kind: DataCorrupted, Path: []string{k}, Key: k,
				Msg: "not an exact copy of the request's value"}
		}
	}
	v, ok := reply.Lookup(KeyOutput)
	if !ok {
		return &DecodingError{Kind: ValueNotFound, Key: KeyOutput, Type: out.Name,
			Msg: "No value associated with key " + KeyOutput + "."}
	}
	if d, isDict := v.(*xpc.Dict); isDict && d.Len() == 0 && out.Form != FormVoid && out.Form != FormMap {
		return &DecodingError{Kind: DataCorrupted, Path: []string{KeyOutput}, Type: out.Name,
			Msg: "empty dictionary where " + out.Name + " is expected"}
	}
	if e := validate(out, v, []string{KeyOutput}); e != nil {
		return e
	}
	return nil
}

// SameValue reports whether a and b are the same xpc value: same wire
// types, same dictionary order, same bytes.
func SameValue(a, b xpc.Value) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ea, err1 := xpc.AppendValue(nil, a)
	eb, err2 := xpc.AppendValue(nil, b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}
