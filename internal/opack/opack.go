// Package opack encodes and decodes OPACK, Apple's byte-tagged object
// encoding, as used for the INFO dictionaries of RemotePairing pair-setup
// (remotepairing.md §4.7, §5.2).
//
// Values map to Go types as follows:
//
//	true/false           bool
//	null (0x04)          Null{}
//	integers             uint64 (decode); any non-negative Go integer (encode)
//	float32/float64      float64 (decode only)
//	UUID (0x05)          UUID (decode only)
//	date (0x06)          Date (decode only)
//	strings              string
//	byte strings         []byte
//	arrays               []any
//	dictionaries         Dict (ordered; key order is kept both ways)
//
// The encoder writes only the forms every reference agrees on (remotepairing.md §5.2,
// iosmux's rules): short and one-byte-length strings and data, at most 14
// entries per array or dictionary, small integers and the 1/4/8-byte integer
// forms. It returns an error for anything else instead of guessing a
// disputed form. The decoder accepts the whole table of
// remotepairing.md §5.2.
//
// The package is pure: byte slices in and out, no I/O, no logging.
package opack

import (
	"errors"
	"fmt"
)

// Null is OPACK's null (0x04, decoded only; remotepairing.md §11).
type Null struct{}

// UUID is a 16-byte OPACK UUID (0x05, decoded only).
type UUID [16]byte

// Date is an OPACK date (0x06): a float64 whose epoch is UNCONFIRMED
// (remotepairing.md §5.2), so it is returned uninterpreted.
type Date float64

// Pair is one dictionary entry.
type Pair struct {
	Key   string
	Value any
}

// Dict is an ordered dictionary. OPACK dictionaries have no canonical order;
// keeping the wire order makes encode(decode(b)) == b for our subset.
type Dict []Pair

// Get returns the value of the first entry named key.
func (d Dict) Get(key string) (any, bool) {
	for _, p := range d {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}

// String returns the string value of key, if key holds a string.
func (d Dict) String(key string) (string, bool) {
	v, ok := d.Get(key)
	s, isStr := v.(string)
	return s, ok && isStr
}

// Bytes returns the data value of key, if key holds data.
func (d Dict) Bytes(key string) ([]byte, bool) {
	v, ok := d.Get(key)
	b, isData := v.([]byte)
	return b, ok && isData
}

// Errors. Every error returned by this package wraps one of these.
var (
	ErrTruncated   = errors.New("opack: truncated input")
	ErrInvalid     = errors.New("opack: invalid encoding")
	ErrTooDeep     = errors.New("opack: nesting too deep")
	ErrTrailing    = errors.New("opack: trailing bytes after value")
	ErrUnsupported = errors.New("opack: value outside the encodable subset")
)

// Tag bytes (remotepairing.md §5.2).
const (
	tagTrue       = 0x01
	tagFalse      = 0x02
	tagTerminator = 0x03
	tagNull       = 0x04
	tagUUID       = 0x05
	tagDate       = 0x06
	tagSmallInt   = 0x08 // 0x08…0x2F: value tag-0x08
	tagInt8       = 0x30
	tagInt16      = 0x31
	tagInt32      = 0x32
	tagInt64      = 0x33
	tagFloat32    = 0x35
	tagFloat64    = 0x36
	tagStr        = 0x40 // 0x40…0x60: length tag-0x40
	tagStr8       = 0x61
	tagStr16      = 0x62
	tagStr32      = 0x63
	tagStr64      = 0x64
	tagData       = 0x70 // 0x70…0x90: length tag-0x70
	tagData8      = 0x91
	tagData16     = 0x92
	tagData32     = 0x93
	tagData64     = 0x94
	tagRef        = 0xA0 // 0xA0…0xC0: back-reference index tag-0xA0
	tagRef8       = 0xC1 // 0xC1…0xC4: 1…4-byte LE index
	tagRef32      = 0xC4
	tagArray      = 0xD0 // 0xD0…0xDE: count tag-0xD0
	tagArrayVar   = 0xDF
	tagDict       = 0xE0 // 0xE0…0xEE: count tag-0xE0
	tagDictVar    = 0xEF

	maxSmallInt   = 39
	maxShortLen   = 32
	maxInlineList = 14
)

func errf(base error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{base}, args...)...)
}
