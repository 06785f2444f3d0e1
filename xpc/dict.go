package xpc

import (
	"fmt"
	"iter"
)

// Entry is one key/value pair of a Dict.
type Entry struct {
	Key   string
	Value Value
}

// Dict is an ordered dictionary object. Entries keep their wire order, so a
// decoded Dict re-encodes to the same bytes (Apple's encoder emits hash order,
// xpc.md §3.4). Lookups return the last entry with the key, as every reference
// decoder does for duplicates; Set replaces in place, so a Dict built with
// Set or NewDict never holds duplicates.
//
// Methods on a nil *Dict behave as on an empty one, so chained look-ups such
// as d.Dict("Properties").String("OSVersion") need no nil checks.
type Dict struct {
	entries []Entry
}

// NewDict builds a Dict from alternating keys and values:
//
//	xpc.NewDict("MessageType", xpc.String("Handshake"), "UUID", id)
//
// Each key must be a string and each value a Value; anything else is a
// programming error and panics (Go numbers are deliberately not accepted:
// int64 versus uint64 must be chosen explicitly, xpc.md §3.7).
func NewDict(kv ...any) *Dict {
	if len(kv)%2 != 0 {
		panic("xpc: NewDict needs key/value pairs")
	}
	d := &Dict{entries: make([]Entry, 0, len(kv)/2)}
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			panic(fmt.Sprintf("xpc: NewDict key %d is %T, want string", i/2, kv[i]))
		}
		v, ok := kv[i+1].(Value)
		if !ok || v == nil {
			panic(fmt.Sprintf("xpc: NewDict value for %q is %T, want xpc.Value", k, kv[i+1]))
		}
		d.Set(k, v)
	}
	return d
}

// Len returns the number of entries.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return len(d.entries)
}

// Set sets key to v, replacing an existing entry in place or appending a new
// one, and returns d so calls can be chained. A nil v is stored as Null.
func (d *Dict) Set(key string, v Value) *Dict {
	if v == nil {
		v = Null{}
	}
	for i := len(d.entries) - 1; i >= 0; i-- {
		if d.entries[i].Key == key {
			d.entries[i].Value = v
			return d
		}
	}
	d.entries = append(d.entries, Entry{Key: key, Value: v})
	return d
}

// Delete removes every entry with key.
func (d *Dict) Delete(key string) {
	if d == nil {
		return
	}
	out := d.entries[:0]
	for _, e := range d.entries {
		if e.Key != key {
			out = append(out, e)
		}
	}
	clear(d.entries[len(out):])
	d.entries = out
}

// Get returns the value stored under key, or nil.
func (d *Dict) Get(key string) Value {
	v, _ := d.Lookup(key)
	return v
}

// Lookup returns the value stored under key and whether it exists.
func (d *Dict) Lookup(key string) (Value, bool) {
	if d == nil {
		return nil, false
	}
	for i := len(d.entries) - 1; i >= 0; i-- {
		if d.entries[i].Key == key {
			return d.entries[i].Value, true
		}
	}
	return nil, false
}

// Has reports whether key exists.
func (d *Dict) Has(key string) bool {
	_, ok := d.Lookup(key)
	return ok
}

// All iterates over the entries in wire order.
func (d *Dict) All() iter.Seq2[string, Value] {
	return func(yield func(string, Value) bool) {
		if d == nil {
			return
		}
		for _, e := range d.entries {
			if !yield(e.Key, e.Value) {
				return
			}
		}
	}
}

// Keys returns the keys in wire order.
func (d *Dict) Keys() []string {
	keys := make([]string, 0, d.Len())
	for k := range d.All() {
		keys = append(keys, k)
	}
	return keys
}

// The typed accessors below return the value under key if it has exactly that
// wire type, else the zero value. Use Get with a type assertion to tell
// "missing" from "wrong type".

// String returns the String under key, or "".
func (d *Dict) String(key string) string { v, _ := d.Get(key).(String); return string(v) }

// Bool returns the Bool under key, or false.
func (d *Dict) Bool(key string) bool { v, _ := d.Get(key).(Bool); return bool(v) }

// Int64 returns the Int64 under key, or 0.
func (d *Dict) Int64(key string) int64 { v, _ := d.Get(key).(Int64); return int64(v) }

// Uint64 returns the Uint64 under key, or 0.
func (d *Dict) Uint64(key string) uint64 { v, _ := d.Get(key).(Uint64); return uint64(v) }

// Double returns the Double under key, or 0.
func (d *Dict) Double(key string) float64 { v, _ := d.Get(key).(Double); return float64(v) }

// Date returns the Date under key, or 0.
func (d *Dict) Date(key string) Date { v, _ := d.Get(key).(Date); return v }

// Data returns the Data under key, or nil.
func (d *Dict) Data(key string) []byte { v, _ := d.Get(key).(Data); return v }

// UUID returns the UUID under key, or the zero UUID.
func (d *Dict) UUID(key string) UUID { v, _ := d.Get(key).(UUID); return v }

// Dict returns the dictionary under key, or nil (which reads as empty).
func (d *Dict) Dict(key string) *Dict { v, _ := d.Get(key).(*Dict); return v }

// Array returns the array under key, or nil.
func (d *Dict) Array(key string) Array { v, _ := d.Get(key).(Array); return v }

// Integer returns the value under key if it is an Int64 or a Uint64 that fits
// in an int64. It is for fields whose wire type is UNCONFIRMED (rsd.md §2.3);
// code that sends must still pick the type explicitly.
func (d *Dict) Integer(key string) (int64, bool) {
	switch v := d.Get(key).(type) {
	case Int64:
		return int64(v), true
	case Uint64:
		if v <= 1<<63-1 {
			return int64(v), true
		}
	}
	return 0, false
}

// Strings returns the elements of an array of strings; non-string elements
// are skipped.
func (a Array) Strings() []string {
	out := make([]string, 0, len(a))
	for _, v := range a {
		if s, ok := v.(String); ok {
			out = append(out, string(s))
		}
	}
	return out
}
