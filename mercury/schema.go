package mercury

import "github.com/iosmux/iosmux/xpc"

// Form is how a Swift type is encoded by CDS's XPC Codable bridge
// (docs/protocols/coredevice-schema.md §2).
type Form uint8

const (
	FormUnknown   Form = iota // encoding never captured: nothing may be built or judged
	FormScalar                // Int64, UInt64, Bool, String, UUID, Double, Float
	FormStruct                // F1: dictionary keyed by property names
	FormRawEnum               // F2: the raw String value
	FormEnum                  // F3/F4: one-key dictionary {case: payload}
	FormOptionSet             // F5: one int64
	FormArray                 // F7 [T]
	FormSet                   // F6 Set<T>: an array
	FormMap                   // F8 [String: T]: a dictionary
	FormVoid                  // an action's Void output: an empty dictionary
)

// Type is the declarative description of one Swift type: enough for Validate
// to judge a value the way Apple's decoder would, and for the builders to
// know whether a value can be built at all.
type Type struct {
	// Name is the type as Apple's decoder names it in errors
	// ("DeviceConnectionChangeResult", "Swift.Int64", "Foundation.UUID").
	Name string
	Form Form
	// Kind is the xpc wire type of a FormScalar (KindDouble for Float, with
	// Float32 set).
	Kind    xpc.Kind
	Float32 bool
	// Fields of a FormStruct, in declaration order.
	Fields []Field
	// Cases of a FormEnum; Keys names its CodingKeys type in errors.
	Cases []Case
	Keys  string
	// Raw values of a FormRawEnum known so far; Confirmed marks the ones
	// seen on the wire (the others were seen in UI or CLI output only).
	Raw []RawValue
	// Elem is the element (FormArray, FormSet) or value (FormMap) type.
	Elem *Type
}

// Field is one stored property of a struct.
type Field struct {
	Key      string
	Type     *Type
	Optional bool
}

// Case is one enum case; Payload is a FormStruct of its associated values
// (no fields for a case without payload), or a FormUnknown type when the
// payload's encoding was never captured.
type Case struct {
	Name    string
	Payload *Type
}

// RawValue is one raw value of a String-raw-value enum.
type RawValue struct {
	Value     string
	Confirmed bool
}

// container reports whether the decoder reads t through a nested container
// (keyed or unkeyed) rather than a single value. See Validate for why it
// matters.
func (t *Type) container() bool {
	switch t.Form {
	case FormStruct, FormEnum, FormArray, FormSet, FormMap, FormVoid:
		return true
	}
	return false
}

// Known reports whether some value of t has a known encoding, so that it
// can be built and judged: t is not FormUnknown, a struct's required fields
// are known, an enum has a case whose payload is known. An array, set or
// dictionary of an unknown type is known (only empty, in effect: Validate
// rejects any element it cannot judge).
func (t *Type) Known() bool { return t.known(map[*Type]bool{}) }

func (t *Type) known(seen map[*Type]bool) bool {
	if seen[t] {
		return true
	}
	seen[t] = true
	switch t.Form {
	case FormUnknown:
		return false
	case FormStruct:
		for _, f := range t.Fields {
			if !f.Optional && !f.Type.known(seen) {
				return false
			}
		}
	case FormEnum:
		for _, c := range t.Cases {
			if c.Payload.known(seen) {
				return true
			}
		}
		return false
	}
	return true
}

// Case returns the enum case named name.
func (t *Type) Case(name string) (Case, bool) {
	for _, c := range t.Cases {
		if c.Name == name {
			return c, true
		}
	}
	return Case{}, false
}

// Field returns the struct field keyed key.
func (t *Type) Field(key string) (Field, bool) {
	for _, f := range t.Fields {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

// Constructors for the declarations in types.go.

func scalar(name string, k xpc.Kind) *Type { return &Type{Name: name, Form: FormScalar, Kind: k} }

func unknown(name string) *Type { return &Type{Name: name, Form: FormUnknown} }

func structOf(name string, fields ...Field) *Type {
	return &Type{Name: name, Form: FormStruct, Fields: fields}
}

func req(key string, t *Type) Field { return Field{Key: key, Type: t} }
func opt(key string, t *Type) Field { return Field{Key: key, Type: t, Optional: true} }

func arrayOf(t *Type) *Type {
	return &Type{Name: "Swift.Array<" + t.Name + ">", Form: FormArray, Elem: t}
}
func setOf(t *Type) *Type { return &Type{Name: "Swift.Set<" + t.Name + ">", Form: FormSet, Elem: t} }
func mapOf(t *Type) *Type {
	return &Type{Name: "Swift.Dictionary<Swift.String, " + t.Name + ">", Form: FormMap, Elem: t}
}

func rawEnum(name string, vs ...RawValue) *Type { return &Type{Name: name, Form: FormRawEnum, Raw: vs} }

func enumOf(name, keys string, cases ...Case) *Type {
	return &Type{Name: name, Form: FormEnum, Keys: keys, Cases: cases}
}

// noPayload is the payload of a case without associated values.
func noPayload(enum, c string) *Type { return structOf(enum + "." + c) }
