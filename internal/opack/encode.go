package opack

import (
	"encoding/binary"
	"reflect"
)

// Marshal encodes v. See the package comment for the accepted Go types.
func Marshal(v any) ([]byte, error) {
	return Append(nil, v)
}

// Append appends the encoding of v to b. On error b is returned unchanged
// in length (anything written past it is garbage).
func Append(b []byte, v any) ([]byte, error) {
	return appendValue(b, v, 0)
}

func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, ErrTooDeep
	}
	switch x := v.(type) {
	case bool:
		if x {
			return append(b, tagTrue), nil
		}
		return append(b, tagFalse), nil
	case string:
		return appendBlob(b, []byte(x), tagStr, tagStr8)
	case []byte:
		return appendBlob(b, x, tagData, tagData8)
	case Dict:
		if len(x) > maxInlineList {
			return b, errf(ErrUnsupported, "dictionary of %d entries (max %d)", len(x), maxInlineList)
		}
		b = append(b, tagDict+byte(len(x)))
		var err error
		for _, p := range x {
			if b, err = appendBlob(b, []byte(p.Key), tagStr, tagStr8); err != nil {
				return b, err
			}
			if b, err = appendValue(b, p.Value, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case []any:
		if len(x) > maxInlineList {
			return b, errf(ErrUnsupported, "array of %d elements (max %d)", len(x), maxInlineList)
		}
		b = append(b, tagArray+byte(len(x)))
		var err error
		for _, e := range x {
			if b, err = appendValue(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if rv.Int() < 0 {
			return b, errf(ErrUnsupported, "negative integer %d", rv.Int())
		}
		return appendUint(b, uint64(rv.Int())), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return appendUint(b, rv.Uint()), nil
	}
	return b, errf(ErrUnsupported, "type %T", v)
}

// appendUint uses the small form, then 1, 4 or 8 bytes; 0x31 (2 bytes) is
// decoded but never written, as opack2/idevice/appium do (opack.json
// "uint32-256").
func appendUint(b []byte, u uint64) []byte {
	switch {
	case u <= maxSmallInt:
		return append(b, tagSmallInt+byte(u))
	case u <= 0xFF:
		return append(b, tagInt8, byte(u))
	case u <= 0xFFFFFFFF:
		return binary.LittleEndian.AppendUint32(append(b, tagInt32), uint32(u))
	}
	return binary.LittleEndian.AppendUint64(append(b, tagInt64), u)
}

// appendBlob writes a string or data with the inline length form up to 32
// bytes (0x60 for a 32-byte string, as opack2 does; go-ios writes 61 20) and
// the one-byte length form up to 255.
func appendBlob(b, v []byte, short, long byte) ([]byte, error) {
	switch {
	case len(v) <= maxShortLen:
		b = append(b, short+byte(len(v)))
	case len(v) <= 0xFF:
		b = append(b, long, byte(len(v)))
	default:
		return b, errf(ErrUnsupported, "%d-byte string or data (max 255)", len(v))
	}
	return append(b, v...), nil
}
