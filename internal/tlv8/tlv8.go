// Package tlv8 encodes and decodes the TLV8 items that carry RemotePairing
// handshake data (remotepairing.md §5.1).
//
// An item is one type byte, one length byte (0…255) and that many value
// bytes; a buffer is a plain concatenation of items. Values longer than 255
// bytes travel as consecutive items of the same type, every one but the last
// holding 255 bytes. A decoder concatenates every item of one type in order of
// appearance, whatever the split (the references split at 255 or 254).
//
// The package is pure: it works on byte slices, never blocks and never logs.
package tlv8

import (
	"errors"
	"fmt"
)

// Type is an item's type byte. The names follow the HomeKit/RemotePairing
// table (remotepairing.md §5.1.3); only some are used by RemotePairing.
type Type byte

const (
	Method           Type = 0x00
	Identifier       Type = 0x01
	Salt             Type = 0x02
	PublicKey        Type = 0x03
	Proof            Type = 0x04
	EncryptedData    Type = 0x05
	State            Type = 0x06
	Error            Type = 0x07
	RetryDelay       Type = 0x08
	Certificate      Type = 0x09
	Signature        Type = 0x0A
	Permissions      Type = 0x0B
	FragmentData     Type = 0x0C
	FragmentLast     Type = 0x0D
	SessionID        Type = 0x0E
	TTL              Type = 0x0F
	ExtraData        Type = 0x10
	Info             Type = 0x11
	ACL              Type = 0x12
	Flags            Type = 0x13
	ValidationData   Type = 0x14
	MFiAuthToken     Type = 0x15
	MFiProductType   Type = 0x16
	SerialNumber     Type = 0x17
	MFiAuthTokenUUID Type = 0x18
	AppFlags         Type = 0x19
	OwnershipProof   Type = 0x1A
	SetupCodeType    Type = 0x1B
	ProductionData   Type = 0x1C
	AppInfo          Type = 0x1D
	Separator        Type = 0xFF
)

var typeNames = map[Type]string{
	Method: "METHOD", Identifier: "IDENTIFIER", Salt: "SALT", PublicKey: "PUBLIC_KEY",
	Proof: "PROOF", EncryptedData: "ENCRYPTED_DATA", State: "STATE", Error: "ERROR",
	RetryDelay: "RETRY_DELAY", Certificate: "CERTIFICATE", Signature: "SIGNATURE",
	Permissions: "PERMISSIONS", FragmentData: "FRAGMENT_DATA", FragmentLast: "FRAGMENT_LAST",
	SessionID: "SESSION_ID", TTL: "TTL", ExtraData: "EXTRA_DATA", Info: "INFO", ACL: "ACL",
	Flags: "FLAGS", ValidationData: "VALIDATION_DATA", MFiAuthToken: "MFI_AUTH_TOKEN",
	MFiProductType: "MFI_PRODUCT_TYPE", SerialNumber: "SERIAL_NUMBER",
	MFiAuthTokenUUID: "MFI_AUTH_TOKEN_UUID", AppFlags: "APP_FLAGS",
	OwnershipProof: "OWNERSHIP_PROOF", SetupCodeType: "SETUP_CODE_TYPE",
	ProductionData: "PRODUCTION_DATA", AppInfo: "APP_INFO", Separator: "SEPARATOR",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("TYPE_0x%02X", byte(t))
}

// MaxItem is the largest value one item can hold.
const MaxItem = 255

// ErrTruncated reports an item whose length runs past the end of the input.
var ErrTruncated = errors.New("tlv8: truncated item")

// Append appends v as one or more items of type t: 255-byte items followed by
// the remainder. An empty v is one zero-length item; a value whose length is a
// multiple of 255 ends without an empty item (remotepairing.md §5.1.2).
func Append(b []byte, t Type, v []byte) []byte {
	if len(v) == 0 {
		return append(b, byte(t), 0)
	}
	for len(v) > 0 {
		n := min(len(v), MaxItem)
		b = append(b, byte(t), byte(n))
		b = append(b, v[:n]...)
		v = v[n:]
	}
	return b
}

// AppendByte appends a one-byte item (STATE, METHOD, ERROR).
func AppendByte(b []byte, t Type, v byte) []byte {
	return append(b, byte(t), 1, v)
}

// Item is one raw item as it appeared on the wire.
type Item struct {
	Type  Type
	Value []byte
}

// Split returns the raw items of b in order. Values alias b.
func Split(b []byte) ([]Item, error) {
	var items []Item
	for off := 0; off < len(b); {
		if len(b)-off < 2 {
			return nil, fmt.Errorf("%w: header at offset %d", ErrTruncated, off)
		}
		t, n := Type(b[off]), int(b[off+1])
		if len(b)-off-2 < n {
			return nil, fmt.Errorf("%w: %v at offset %d wants %d bytes, %d left", ErrTruncated, t, off, n, len(b)-off-2)
		}
		items = append(items, Item{Type: t, Value: b[off+2 : off+2+n : off+2+n]})
		off += 2 + n
	}
	return items, nil
}

// Values is a decoded buffer: each type maps to the concatenation of all its
// items' values. Unknown types are kept. A SEPARATOR never splits a value
// (no RemotePairing message repeats a type for two values,
// remotepairing.md §5.1.2); it appears under its own type like any item
// (testdata/tlv8.json "empty-value").
type Values map[Type][]byte

// Parse decodes b into Values. The returned slices never alias b.
func Parse(b []byte) (Values, error) {
	items, err := Split(b)
	if err != nil {
		return nil, err
	}
	v := make(Values, len(items))
	for _, it := range items {
		prev, ok := v[it.Type]
		if !ok {
			prev = []byte{}
		}
		v[it.Type] = append(prev, it.Value...)
	}
	return v, nil
}

// Get returns the value of type t and whether any item of that type was
// present.
func (v Values) Get(t Type) ([]byte, bool) {
	b, ok := v[t]
	return b, ok
}

// Byte returns the value of a one-byte item. ok is false when the item is
// absent or not exactly one byte long.
func (v Values) Byte(t Type) (b byte, ok bool) {
	x, present := v[t]
	if !present || len(x) != 1 {
		return 0, false
	}
	return x[0], true
}
