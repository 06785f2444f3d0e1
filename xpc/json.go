package xpc

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// JSONStyle chooses how AppendJSON renders values.
type JSONStyle int

const (
	// JSONPlain is what pymobiledevice3 prints for XPC values (iosmux
	// rsd-info --json): strings, booleans and null as themselves, 64-bit
	// integers as exact numbers, doubles as numbers (NaN and infinities
	// as null), UUIDs as lower-case dashed text, data as base64, dates as
	// RFC 3339, a file transfer as {"file_transfer": id, "size": size}.
	JSONPlain JSONStyle = iota
	// JSONTyped keeps the wire types visible, for the backend's wire log:
	// strings, booleans and null as themselves, every other scalar tagged
	// with its type ({"int64":"-5"}, {"uuid":"…"}, {"date":"…"},
	// {"double":1.5}, {"data":"base64"}), a file transfer as
	// {"fileTransfer":{"id":"…","object":…}}; nesting past
	// DefaultMaxDepth is cut to "…".
	JSONTyped
)

// AppendJSON appends v rendered as one JSON value in style to b.
// Dictionaries keep their order.
func AppendJSON(b []byte, v Value, style JSONStyle) []byte {
	if style == JSONTyped {
		return appendTyped(b, v, 0)
	}
	return appendPlain(b, v)
}

// AppendJSONMessage appends a message's flags, id and body as a JSON
// object's members (`"message":{"flags":"0x…","id":…,"body":…}`), the
// wire log's rendering.
func AppendJSONMessage(b []byte, m *Message) []byte {
	b = append(b, `"message":{"flags":"0x`...)
	var f [4]byte
	binary.BigEndian.PutUint32(f[:], uint32(m.Flags))
	b = fmt.Appendf(b, "%02x%02x%02x%02x", f[0], f[1], f[2], f[3])
	b = append(b, `","id":`...)
	b = strconv.AppendUint(b, m.ID, 10)
	if m.Body != nil {
		b = append(b, `,"body":`...)
		b = appendTyped(b, m.Body, 0)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string, escaped as encoding/json does.
func appendString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil { // only invalid UTF-8, which Marshal replaces; not reached
		return strconv.AppendQuote(b, s)
	}
	return append(b, q...)
}

func appendPlain(b []byte, v Value) []byte {
	switch v := v.(type) {
	case *Dict:
		b = append(b, '{')
		i := 0
		for k, e := range v.All() {
			if i > 0 {
				b = append(b, ',')
			}
			i++
			b = appendString(b, k)
			b = append(b, ':')
			b = appendPlain(b, e)
		}
		return append(b, '}')
	case Array:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendPlain(b, e)
		}
		return append(b, ']')
	case String:
		return appendString(b, string(v))
	case Bool:
		return strconv.AppendBool(b, bool(v))
	case Int64:
		return strconv.AppendInt(b, int64(v), 10)
	case Uint64:
		return strconv.AppendUint(b, uint64(v), 10)
	case Double:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(b, "null"...)
		}
		n, _ := json.Marshal(f)
		return append(b, n...)
	case Date:
		return appendString(b, v.Time().Format(time.RFC3339Nano))
	case UUID:
		return appendString(b, v.String())
	case Data:
		return appendString(b, base64.StdEncoding.EncodeToString(v))
	case FileTransfer:
		size, _ := v.Size()
		b = append(b, `{"file_transfer":`...)
		b = strconv.AppendUint(b, v.ID, 10)
		b = append(b, `,"size":`...)
		b = strconv.AppendUint(b, size, 10)
		return append(b, '}')
	case nil, Null:
		return append(b, "null"...)
	}
	return appendString(b, fmt.Sprint(v))
}

func appendTyped(b []byte, v Value, depth int) []byte {
	if depth > DefaultMaxDepth {
		return append(b, `"…"`...)
	}
	tagged := func(tag string, val []byte) []byte {
		b = append(b, `{"`...)
		b = append(b, tag...)
		b = append(b, `":`...)
		b = append(b, val...)
		return append(b, '}')
	}
	quoted := func(s string) []byte { return strconv.AppendQuote(nil, s) }
	switch v := v.(type) {
	case nil, Null:
		return append(b, "null"...)
	case Bool:
		return strconv.AppendBool(b, bool(v))
	case String:
		return appendString(b, string(v))
	case Int64:
		return tagged("int64", quoted(strconv.FormatInt(int64(v), 10)))
	case Uint64:
		return tagged("uint64", quoted(strconv.FormatUint(uint64(v), 10)))
	case Double:
		f := float64(v)
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return tagged("double", quoted(strconv.FormatFloat(f, 'g', -1, 64)))
		}
		return tagged("double", strconv.AppendFloat(nil, f, 'g', -1, 64))
	case Date:
		return tagged("date", quoted(v.Time().Format(time.RFC3339Nano)))
	case Data:
		return tagged("data", quoted(base64.StdEncoding.EncodeToString(v)))
	case UUID:
		return tagged("uuid", quoted(v.String()))
	case Array:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTyped(b, e, depth+1)
		}
		return append(b, ']')
	case *Dict:
		b = append(b, '{')
		i := 0
		for k, e := range v.All() {
			if i > 0 {
				b = append(b, ',')
			}
			i++
			b = appendString(b, k)
			b = append(b, ':')
			b = appendTyped(b, e, depth+1)
		}
		return append(b, '}')
	case FileTransfer:
		b = append(b, `{"fileTransfer":{"id":"`...)
		b = strconv.AppendUint(b, v.ID, 10)
		b = append(b, `","object":`...)
		b = appendTyped(b, v.Object, depth+1)
		return append(b, "}}"...)
	}
	return tagged("kind", quoted(v.Kind().String()))
}
