package xpc

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// AppendValue appends the encoding of one object (type tag and body) to b.
// Containers are written in canonical form: the array length always counts
// the element count field (never go-ios's short form, xpc.md §3.5), dictionary
// entries in the Dict's order.
func AppendValue(b []byte, v Value) ([]byte, error) {
	start := len(b)
	b, err := appendValue(b, v, 0)
	if err != nil {
		return b[:start], err
	}
	return b, nil
}

// EncodeError reports a value that cannot be encoded.
type EncodeError struct {
	Path string // where in the value tree, e.g. `["Services"]["x"][2]`
	Msg  string
}

func (e *EncodeError) Error() string {
	if e.Path == "" {
		return "xpc: cannot encode: " + e.Msg
	}
	return "xpc: cannot encode " + e.Path + ": " + e.Msg
}

func encErr(msg string, args ...any) error { return &EncodeError{Msg: fmt.Sprintf(msg, args...)} }

// withPath prefixes the path of an EncodeError with one more step.
func withPath(err error, step string) error {
	if e, ok := err.(*EncodeError); ok {
		return &EncodeError{Path: step + e.Path, Msg: e.Msg}
	}
	return err
}

func pad4(n int) int { return (4 - n%4) % 4 }

func appendZeros(b []byte, n int) []byte {
	for ; n > 0; n-- {
		b = append(b, 0)
	}
	return b
}

func appendTag(b []byte, k Kind) []byte { return binary.LittleEndian.AppendUint32(b, uint32(k)) }

func appendValue(b []byte, v Value, depth int) ([]byte, error) {
	switch v := v.(type) {
	case Null:
		return appendTag(b, KindNull), nil
	case Bool:
		b = appendTag(b, KindBool)
		if v {
			return append(b, 1, 0, 0, 0), nil
		}
		return append(b, 0, 0, 0, 0), nil
	case Int64:
		return binary.LittleEndian.AppendUint64(appendTag(b, KindInt64), uint64(v)), nil
	case Uint64:
		return binary.LittleEndian.AppendUint64(appendTag(b, KindUint64), uint64(v)), nil
	case Double:
		return binary.LittleEndian.AppendUint64(appendTag(b, KindDouble), math.Float64bits(float64(v))), nil
	case Date:
		return binary.LittleEndian.AppendUint64(appendTag(b, KindDate), uint64(v)), nil
	case Data:
		if uint64(len(v)) > math.MaxUint32 {
			return b, encErr("data of %d bytes exceeds 32-bit length", len(v))
		}
		b = appendTag(b, KindData)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
		return appendZeros(b, pad4(len(v))), nil
	case String:
		if err := checkText(string(v)); err != nil {
			return b, encErr("string %.40q: %v", string(v), err)
		}
		if uint64(len(v))+1 > math.MaxUint32 {
			return b, encErr("string of %d bytes exceeds 32-bit length", len(v))
		}
		b = appendTag(b, KindString)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)+1))
		b = append(b, v...)
		return appendZeros(b, 1+pad4(len(v)+1)), nil
	case UUID:
		return append(appendTag(b, KindUUID), v[:]...), nil
	case Array:
		if depth >= DefaultMaxDepth {
			return b, encErr("nesting deeper than %d", DefaultMaxDepth)
		}
		b = appendTag(b, KindArray)
		lenAt := len(b)
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		for i, e := range v {
			var err error
			if b, err = appendValue(b, e, depth+1); err != nil {
				return b, withPath(err, fmt.Sprintf("[%d]", i))
			}
		}
		return putLen(b, lenAt)
	case *Dict:
		if v == nil {
			return b, encErr("nil *Dict")
		}
		if depth >= DefaultMaxDepth {
			return b, encErr("nesting deeper than %d", DefaultMaxDepth)
		}
		b = appendTag(b, KindDict)
		lenAt := len(b)
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v.entries)))
		for _, e := range v.entries {
			if err := checkText(e.Key); err != nil {
				return b, encErr("key %.40q: %v", e.Key, err)
			}
			b = append(b, e.Key...)
			b = appendZeros(b, 1+pad4(len(e.Key)+1))
			var err error
			if b, err = appendValue(b, e.Value, depth+1); err != nil {
				return b, withPath(err, fmt.Sprintf("[%q]", e.Key))
			}
		}
		return putLen(b, lenAt)
	case FileTransfer:
		if v.Object == nil {
			return b, encErr("file_transfer %d without object", v.ID)
		}
		b = binary.LittleEndian.AppendUint64(appendTag(b, KindFileTransfer), v.ID)
		return appendValue(b, v.Object, depth+1)
	case Pointer:
		return appendTag(b, KindPointer), nil
	case FD:
		return binary.LittleEndian.AppendUint32(appendTag(b, KindFD), uint32(v)), nil
	case Shmem:
		b = binary.LittleEndian.AppendUint32(appendTag(b, KindShmem), v.Length)
		return binary.LittleEndian.AppendUint32(b, v.Unknown), nil
	case Opaque:
		b = appendTag(b, v.Type)
		b = append(b, v.Body...)
		return appendZeros(b, pad4(len(v.Body))), nil
	case nil:
		return b, encErr("nil Value")
	}
	return b, encErr("unknown value type %T", v)
}

// putLen fills the u32 length field at lenAt with the number of bytes after it.
func putLen(b []byte, lenAt int) ([]byte, error) {
	n := len(b) - lenAt - 4
	if uint64(n) > math.MaxUint32 {
		return b, encErr("container of %d bytes exceeds 32-bit length", n)
	}
	binary.LittleEndian.PutUint32(b[lenAt:], uint32(n))
	return b, nil
}

// checkText enforces what strings and keys must be on the wire: valid UTF-8
// with no NUL (the decoder rejects anything else, xpc.md §3.4, §3.6).
func checkText(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("contains NUL")
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("invalid UTF-8")
	}
	return nil
}
