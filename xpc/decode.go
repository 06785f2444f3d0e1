package xpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Decoder bounds (xpc.md §2.1, §3.11).
const (
	// DefaultMaxBody bounds a message's body_length when DecodeOptions.MaxBody
	// is 0. frida caps at 128 MiB; no RemoteXPC message seen comes near
	// 64 MiB (the largest, an RSD Handshake, is about 14 KiB).
	DefaultMaxBody = 64 << 20
	// DefaultMaxDepth bounds nesting of arrays, dictionaries and file
	// transfers (the RSD Handshake nests 4 deep).
	DefaultMaxDepth = 64
)

var (
	// ErrTruncated means the input ends before the message or object does.
	// A stream reader waits for more bytes; a one-shot decoder fails.
	ErrTruncated = errors.New("xpc: truncated")
	// ErrTooLarge means a declared size exceeds the configured maximum.
	ErrTooLarge = errors.New("xpc: message too large")
)

// SyntaxError describes malformed input and where it was found.
type SyntaxError struct {
	Offset int    // byte offset in the decoded input
	Msg    string // what is wrong
	Err    error  // ErrTruncated, ErrTooLarge or nil
}

func (e *SyntaxError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: %s at offset %d", e.Err, e.Msg, e.Offset)
	}
	return fmt.Sprintf("xpc: %s at offset %d", e.Msg, e.Offset)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// DecodeOptions configures decoding. The zero value is ready to use.
type DecodeOptions struct {
	// MaxBody bounds body_length; 0 means DefaultMaxBody.
	MaxBody int
	// MaxDepth bounds container nesting; 0 means DefaultMaxDepth.
	MaxDepth int
	// KernelObjects accepts pointer, fd and shmem objects with pmd3's layouts.
	// Off by default: xpc.md §3.2 requires rejecting every tag that cannot occur
	// in RemoteXPC traffic.
	KernelObjects bool
	// Handles accepts, for every kind that cannot cross a process (see
	// IsHandleKind), the type tag followed by a u64le handle id, decoded as
	// an Opaque whose Body is those 8 bytes (NewHandle). It is for the
	// private socket between iosmux and its dylib inside CoreDeviceService
	// (docs/protocols/coredevice-bridge.md), never for RemoteXPC traffic,
	// which must keep rejecting these tags. It takes precedence over
	// KernelObjects.
	Handles bool
}

// Decode decodes exactly one message from b with default options.
func Decode(b []byte) (Message, error) { return DecodeOptions{}.Decode(b) }

// DecodeValue decodes exactly one object from b with default options.
func DecodeValue(b []byte) (Value, error) { return DecodeOptions{}.DecodeValue(b) }

// Decode decodes exactly one message: b must hold the wrapper and the whole
// body and nothing after it. Strings and data are copied; b is not retained.
func (o DecodeOptions) Decode(b []byte) (Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return Message{}, err
	}
	if h.BodyLen > uint64(o.maxBody()) {
		return Message{}, &SyntaxError{Offset: 8, Msg: fmt.Sprintf("body length %d exceeds limit %d", h.BodyLen, o.maxBody()), Err: ErrTooLarge}
	}
	total := HeaderLen + int(h.BodyLen)
	if len(b) < total {
		return Message{}, &SyntaxError{Offset: len(b), Msg: fmt.Sprintf("message of %d bytes", total), Err: ErrTruncated}
	}
	if len(b) > total {
		return Message{}, &SyntaxError{Offset: total, Msg: fmt.Sprintf("%d bytes after the message", len(b)-total)}
	}
	m := Message{Flags: h.Flags, ID: h.ID}
	if h.BodyLen == 0 {
		return m, nil
	}
	if h.BodyLen < payloadHeaderLen+4 {
		return Message{}, &SyntaxError{Offset: 8, Msg: fmt.Sprintf("body length %d too short for a payload", h.BodyLen)}
	}
	if v := binary.LittleEndian.Uint32(b[HeaderLen:]); v != PayloadMagic {
		return Message{}, &SyntaxError{Offset: HeaderLen, Msg: fmt.Sprintf("bad payload magic %#08x", v)}
	}
	if v := binary.LittleEndian.Uint32(b[HeaderLen+4:]); v != PayloadVersion {
		return Message{}, &SyntaxError{Offset: HeaderLen + 4, Msg: fmt.Sprintf("unsupported payload version %d", v)}
	}
	d := decoder{b: b, maxDepth: o.maxDepth(), kernel: o.KernelObjects, handles: o.Handles}
	root := HeaderLen + payloadHeaderLen
	if k := Kind(binary.LittleEndian.Uint32(b[root:])); k != KindDict {
		return Message{}, &SyntaxError{Offset: root, Msg: fmt.Sprintf("root object is %v, want dictionary", k)}
	}
	v, next, err := d.value(root, total, 0)
	if err != nil {
		return Message{}, err
	}
	if next != total {
		return Message{}, &SyntaxError{Offset: next, Msg: fmt.Sprintf("%d bytes after the root object", total-next)}
	}
	m.Body = v.(*Dict)
	return m, nil
}

// DecodeValue decodes exactly one object (tag and body) filling b.
func (o DecodeOptions) DecodeValue(b []byte) (Value, error) {
	d := decoder{b: b, maxDepth: o.maxDepth(), kernel: o.KernelObjects, handles: o.Handles}
	v, next, err := d.value(0, len(b), 0)
	if err != nil {
		return nil, err
	}
	if next != len(b) {
		return nil, &SyntaxError{Offset: next, Msg: fmt.Sprintf("%d bytes after the object", len(b)-next)}
	}
	return v, nil
}

func (o DecodeOptions) maxBody() int {
	if o.MaxBody > 0 {
		return o.MaxBody
	}
	return DefaultMaxBody
}

func (o DecodeOptions) maxDepth() int {
	if o.MaxDepth > 0 {
		return o.MaxDepth
	}
	return DefaultMaxDepth
}

// decoder parses objects out of b. Every read is checked against a window end
// that is never beyond len(b); container windows nest inside it.
type decoder struct {
	b        []byte
	maxDepth int
	kernel   bool
	handles  bool
}

// short reports that n bytes at p do not fit before end.
func (d *decoder) short(p, end, n int, what string) error {
	if end == len(d.b) {
		return &SyntaxError{Offset: p, Msg: fmt.Sprintf("%s needs %d bytes, %d left", what, n, end-p), Err: ErrTruncated}
	}
	return &SyntaxError{Offset: p, Msg: fmt.Sprintf("%s needs %d bytes, %d left in its container", what, n, end-p)}
}

func (d *decoder) u32(p, end int, what string) (uint32, error) {
	if end-p < 4 {
		return 0, d.short(p, end, 4, what)
	}
	return binary.LittleEndian.Uint32(d.b[p:]), nil
}

func (d *decoder) u64(p, end int, what string) (uint64, error) {
	if end-p < 8 {
		return 0, d.short(p, end, 8, what)
	}
	return binary.LittleEndian.Uint64(d.b[p:]), nil
}

// value decodes the object at p, which must end by end, and returns it with
// the offset just after it.
func (d *decoder) value(p, end, depth int) (Value, int, error) {
	tag, err := d.u32(p, end, "type tag")
	if err != nil {
		return nil, p, err
	}
	at := p
	p += 4
	k := Kind(tag)
	if d.handles && IsHandleKind(k) {
		if end-p < 8 {
			return nil, p, d.short(p, end, 8, k.String()+" handle")
		}
		return Opaque{Type: k, Body: append([]byte(nil), d.b[p:p+8]...)}, p + 8, nil
	}
	switch k {
	case KindNull:
		return Null{}, p, nil
	case KindBool:
		v, err := d.u32(p, end, "bool")
		// The value is the first byte; the other three are padding.
		return Bool(v&0xff != 0), p + 4, err
	case KindInt64:
		v, err := d.u64(p, end, "int64")
		return Int64(v), p + 8, err
	case KindUint64:
		v, err := d.u64(p, end, "uint64")
		return Uint64(v), p + 8, err
	case KindDouble:
		v, err := d.u64(p, end, "double")
		return Double(math.Float64frombits(v)), p + 8, err
	case KindDate:
		v, err := d.u64(p, end, "date")
		return Date(v), p + 8, err
	case KindUUID:
		if end-p < 16 {
			return nil, p, d.short(p, end, 16, "uuid")
		}
		var u UUID
		copy(u[:], d.b[p:])
		return u, p + 16, nil
	case KindData:
		n, body, next, err := d.sized(p, end, "data")
		if err != nil {
			return nil, p, err
		}
		return Data(append([]byte{}, d.b[body:body+n]...)), next, nil
	case KindString:
		n, body, next, err := d.sized(p, end, "string")
		if err != nil {
			return nil, p, err
		}
		s, err := d.text(body, body+n, "string")
		return String(s), next, err
	case KindArray, KindDict, KindFileTransfer:
		if depth >= d.maxDepth {
			return nil, at, &SyntaxError{Offset: at, Msg: fmt.Sprintf("nesting deeper than %d", d.maxDepth)}
		}
		switch k {
		case KindArray:
			return d.array(p, end, depth+1)
		case KindDict:
			return d.dict(p, end, depth+1)
		}
		id, err := d.u64(p, end, "file_transfer id")
		if err != nil {
			return nil, p, err
		}
		obj, next, err := d.value(p+8, end, depth+1)
		if err != nil {
			return nil, p, err
		}
		return FileTransfer{ID: id, Object: obj}, next, nil
	case KindPointer, KindFD, KindShmem:
		if !d.kernel {
			break
		}
		switch k {
		case KindPointer:
			return Pointer{}, p, nil
		case KindFD:
			v, err := d.u32(p, end, "fd")
			return FD(v), p + 4, err
		}
		if end-p < 8 {
			return nil, p, d.short(p, end, 8, "shmem")
		}
		return Shmem{Length: binary.LittleEndian.Uint32(d.b[p:]), Unknown: binary.LittleEndian.Uint32(d.b[p+4:])}, p + 8, nil
	}
	return nil, at, &SyntaxError{Offset: at, Msg: fmt.Sprintf("unsupported object type %v", k)}
}

// sized reads a u32 length at p followed by that many bytes and zero padding
// to 4; it returns the length, the body offset and the offset after padding.
func (d *decoder) sized(p, end int, what string) (n, body, next int, err error) {
	l, err := d.u32(p, end, what+" length")
	if err != nil {
		return 0, 0, 0, err
	}
	body = p + 4
	if uint64(l) > uint64(end-body) {
		return 0, 0, 0, d.short(body, end, int(min(l, math.MaxInt32)), what)
	}
	n = int(l)
	next = body + n + pad4(n)
	if next > end {
		return 0, 0, 0, d.short(body+n, end, pad4(n), what+" padding")
	}
	return n, body, next, nil
}

// text returns the UTF-8 text in b[p:end] up to the first NUL, which must
// exist (xpc.md §3.6).
func (d *decoder) text(p, end int, what string) (string, error) {
	for i := p; i < end; i++ {
		if d.b[i] == 0 {
			if !utf8.Valid(d.b[p:i]) {
				return "", &SyntaxError{Offset: p, Msg: what + " is not valid UTF-8"}
			}
			return string(d.b[p:i]), nil
		}
	}
	return "", &SyntaxError{Offset: p, Msg: what + " has no NUL terminator"}
}

// array decodes an array body at p. The length field normally counts the
// count field and the elements; go-ios writes only the elements (xpc.md §3.5,
// vector 15), so both are accepted after parsing by count.
func (d *decoder) array(p, end, depth int) (Value, int, error) {
	l, err := d.u32(p, end, "array length")
	if err != nil {
		return nil, p, err
	}
	c, err := d.u32(p+4, end, "array count")
	if err != nil {
		return nil, p, err
	}
	q := p + 8
	if uint64(c) > uint64(end-q)/4 {
		return nil, p, &SyntaxError{Offset: p + 4, Msg: fmt.Sprintf("array count %d exceeds the %d bytes left", c, end-q)}
	}
	arr := make(Array, 0, c)
	for i := 0; i < int(c); i++ {
		var v Value
		if v, q, err = d.value(q, end, depth); err != nil {
			return nil, p, err
		}
		arr = append(arr, v)
	}
	if got := uint64(q - p - 4); got != uint64(l) && got != uint64(l)+4 {
		return nil, p, &SyntaxError{Offset: p, Msg: fmt.Sprintf("array length %d does not match its %d bytes", l, got)}
	}
	return arr, q, nil
}

// dict decodes a dictionary body at p: entries are parsed by count within
// the window the length field declares, which they must fill exactly.
func (d *decoder) dict(p, end, depth int) (Value, int, error) {
	l, err := d.u32(p, end, "dictionary length")
	if err != nil {
		return nil, p, err
	}
	if uint64(l) > uint64(end-p-4) {
		return nil, p, d.short(p+4, end, int(min(l, math.MaxInt32)), "dictionary")
	}
	wend := p + 4 + int(l)
	c, err := d.u32(p+4, wend, "dictionary count")
	if err != nil {
		return nil, p, err
	}
	q := p + 8
	if uint64(c) > uint64(wend-q)/8 {
		return nil, p, &SyntaxError{Offset: p + 4, Msg: fmt.Sprintf("dictionary count %d exceeds the %d bytes of its entries", c, wend-q)}
	}
	dict := &Dict{entries: make([]Entry, 0, c)}
	for i := 0; i < int(c); i++ {
		key, err := d.key(q, wend)
		if err != nil {
			return nil, p, err
		}
		q += len(key) + 1 + pad4(len(key)+1)
		var v Value
		if v, q, err = d.value(q, wend, depth); err != nil {
			return nil, p, err
		}
		dict.entries = append(dict.entries, Entry{Key: key, Value: v})
	}
	if q != wend {
		return nil, p, &SyntaxError{Offset: q, Msg: fmt.Sprintf("%d bytes left in dictionary after %d entries", wend-q, c)}
	}
	return dict, q, nil
}

// key reads a NUL-terminated, zero-padded dictionary key at p.
func (d *decoder) key(p, end int) (string, error) {
	k, err := d.text(p, end, "dictionary key")
	if err != nil {
		return "", err
	}
	n := len(k) + 1
	if p+n+pad4(n) > end {
		return "", d.short(p+n, end, pad4(n), "key padding")
	}
	return k, nil
}
