package opack

import (
	"math"
	"unicode/utf8"
)

// Decoder limits. Pairing INFO dictionaries are a few hundred bytes with one
// level of nesting; these bounds only stop hostile input from using much
// memory or stack.
const (
	maxDepth = 32
	// maxElems bounds the entries of one 0xDF/0xEF container. Each entry
	// needs at least one input byte, so len(input) bounds it as well.
	maxElems = 1 << 16
)

// Unmarshal decodes exactly one value from b. After the value, one extra
// 0x03 is tolerated (opack2 and appium end a 0xEF dictionary with two;
// remotepairing.md §11); anything else is ErrTrailing.
func Unmarshal(b []byte) (any, error) {
	d := decoder{in: b}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	rest := d.in[d.off:]
	if len(rest) == 1 && rest[0] == tagTerminator {
		rest = nil
	}
	if len(rest) != 0 {
		return nil, errf(ErrTrailing, "%d bytes at offset %d", len(rest), d.off)
	}
	return v, nil
}

type decoder struct {
	in  []byte
	off int
	// refs holds the objects a back-reference may name, in decoding order
	// (pyatv's rule, remotepairing.md §5.2: strings, data, UUIDs, dates,
	// floats and integers in the 0x30…0x33 forms).
	refs []any
}

func (d *decoder) take(n int) ([]byte, bool) {
	if n < 0 || len(d.in)-d.off < n {
		return nil, false
	}
	b := d.in[d.off : d.off+n]
	d.off += n
	return b, true
}

func (d *decoder) uintLE(n int) (uint64, bool) {
	b, ok := d.take(n)
	if !ok {
		return 0, false
	}
	var u uint64
	for i := n - 1; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	return u, true
}

func (d *decoder) truncated(what string, at int) error {
	return errf(ErrTruncated, "%s at offset %d", what, at)
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, ErrTooDeep
	}
	at := d.off
	tb, ok := d.take(1)
	if !ok {
		return nil, d.truncated("tag", at)
	}
	tag := tb[0]
	switch {
	case tag == tagTrue:
		return true, nil
	case tag == tagFalse:
		return false, nil
	case tag == tagNull:
		return Null{}, nil
	case tag == tagUUID:
		b, ok := d.take(16)
		if !ok {
			return nil, d.truncated("UUID", at)
		}
		var u UUID
		copy(u[:], b)
		d.refs = append(d.refs, u)
		return u, nil
	case tag == tagDate:
		u, ok := d.uintLE(8)
		if !ok {
			return nil, d.truncated("date", at)
		}
		v := Date(math.Float64frombits(u))
		d.refs = append(d.refs, v)
		return v, nil
	case tag >= tagSmallInt && tag < tagInt8:
		return uint64(tag - tagSmallInt), nil
	case tag >= tagInt8 && tag <= tagInt64:
		u, ok := d.uintLE(1 << (tag - tagInt8))
		if !ok {
			return nil, d.truncated("integer", at)
		}
		d.refs = append(d.refs, u)
		return u, nil
	case tag == tagFloat32:
		u, ok := d.uintLE(4)
		if !ok {
			return nil, d.truncated("float32", at)
		}
		v := float64(math.Float32frombits(uint32(u)))
		d.refs = append(d.refs, v)
		return v, nil
	case tag == tagFloat64:
		u, ok := d.uintLE(8)
		if !ok {
			return nil, d.truncated("float64", at)
		}
		v := math.Float64frombits(u)
		d.refs = append(d.refs, v)
		return v, nil
	case tag >= tagStr && tag <= tagStr64:
		b, err := d.blob(tag, tagStr, tagStr8, at)
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(b) {
			return nil, errf(ErrInvalid, "string at offset %d is not UTF-8", at)
		}
		s := string(b)
		d.refs = append(d.refs, s)
		return s, nil
	case tag >= tagData && tag <= tagData64:
		b, err := d.blob(tag, tagData, tagData8, at)
		if err != nil {
			return nil, err
		}
		v := append([]byte{}, b...)
		d.refs = append(d.refs, v)
		return v, nil
	case tag >= tagRef && tag <= tagRef32:
		var idx uint64
		if tag < tagRef8 {
			idx = uint64(tag - tagRef)
		} else if idx, ok = d.uintLE(int(tag-tagRef8) + 1); !ok {
			return nil, d.truncated("back-reference", at)
		}
		if idx >= uint64(len(d.refs)) {
			return nil, errf(ErrInvalid, "back-reference %d at offset %d, only %d objects", idx, at, len(d.refs))
		}
		return d.refs[idx], nil
	case tag >= tagArray && tag <= tagArrayVar:
		return d.array(tag, depth, at)
	case tag >= tagDict && tag <= tagDictVar:
		return d.dict(tag, depth, at)
	}
	return nil, errf(ErrInvalid, "unknown tag 0x%02x at offset %d", tag, at)
}

// blob reads the bytes of a string or data item. The 2/4/8-byte length forms
// are little-endian, following idevice and pyatv (remotepairing.md §11).
func (d *decoder) blob(tag, short, long byte, at int) ([]byte, error) {
	var n uint64
	if tag-short <= maxShortLen {
		n = uint64(tag - short)
	} else {
		var ok bool
		if n, ok = d.uintLE(1 << (tag - long)); !ok {
			return nil, d.truncated("length", at)
		}
	}
	if n > uint64(len(d.in)-d.off) {
		return nil, errf(ErrTruncated, "%d-byte value at offset %d, %d bytes left", n, at, len(d.in)-d.off)
	}
	b, _ := d.take(int(n))
	return b, nil
}

// atTerminator consumes a 0x03 if one is next.
func (d *decoder) atTerminator() bool {
	if d.off < len(d.in) && d.in[d.off] == tagTerminator {
		d.off++
		return true
	}
	return false
}

func (d *decoder) array(tag byte, depth, at int) (any, error) {
	variable := tag == tagArrayVar
	n := int(tag - tagArray)
	out := []any{}
	for i := 0; variable || i < n; i++ {
		if variable {
			if d.atTerminator() {
				return out, nil
			}
			if i >= maxElems {
				return nil, errf(ErrInvalid, "array at offset %d exceeds %d elements", at, maxElems)
			}
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (d *decoder) dict(tag byte, depth, at int) (any, error) {
	variable := tag == tagDictVar
	n := int(tag - tagDict)
	out := Dict{}
	for i := 0; variable || i < n; i++ {
		if variable {
			if d.atTerminator() {
				return out, nil
			}
			if i >= maxElems {
				return nil, errf(ErrInvalid, "dictionary at offset %d exceeds %d entries", at, maxElems)
			}
		}
		keyAt := d.off
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		key, ok := k.(string)
		if !ok {
			return nil, errf(ErrInvalid, "dictionary key at offset %d is %T, want string", keyAt, k)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, Pair{Key: key, Value: v})
	}
	return out, nil
}
