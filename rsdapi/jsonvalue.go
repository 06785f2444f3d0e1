package rsdapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// The reference servers are Python (json.dumps) and JavaScript
// (JSON.stringify); encoding/json differs from both (it escapes <, >, & and
// U+2028, and cannot keep the key order of a decoded object). This file holds
// a small ordered JSON value and an encoder with the two Python styles.

// value is one JSON value: string, int64, jsonNumber, bool, nil, []value or
// object.
type value = any

// jsonNumber is a number kept as its source text (pass-through values).
type jsonNumber string

type member struct {
	key string
	val value
}

// object keeps insertion order, as Python dicts and JS objects do.
type object []member

// set replaces the value of key in place (Python/JS keep the first position
// of a repeated key) or appends it.
func (o *object) set(key string, v value) {
	for i := range *o {
		if (*o)[i].key == key {
			(*o)[i].val = v
			return
		}
	}
	*o = append(*o, member{key, v})
}

func (o object) get(key string) (value, bool) {
	for _, m := range o {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

type style int

const (
	// styleDumps is Python json.dumps defaults: separators ", " and ": ",
	// everything outside printable ASCII escaped as \uXXXX. pymobiledevice3's
	// handlers use it.
	styleDumps style = iota
	// styleCompact is FastAPI's JSONResponse (json.dumps with
	// separators=(",", ":"), ensure_ascii=False) and equally JSON.stringify:
	// no spaces, UTF-8 kept, only '"', '\' and C0 controls escaped.
	styleCompact
)

func encodeJSON(v value, s style) []byte {
	return appendValue(nil, v, s)
}

func appendValue(b []byte, v value, s style) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case jsonNumber:
		return append(b, v...)
	case string:
		return appendString(b, v, s == styleDumps)
	case []value:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = appendSep(b, ',', s)
			}
			b = appendValue(b, e, s)
		}
		return append(b, ']')
	case []string:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = appendSep(b, ',', s)
			}
			b = appendString(b, e, s == styleDumps)
		}
		return append(b, ']')
	case object:
		b = append(b, '{')
		for i, m := range v {
			if i > 0 {
				b = appendSep(b, ',', s)
			}
			b = appendString(b, m.key, s == styleDumps)
			b = appendSep(b, ':', s)
			b = appendValue(b, m.val, s)
		}
		return append(b, '}')
	default:
		// Only the types above are ever built; a new one is a bug here.
		panic(fmt.Sprintf("rsdapi: cannot encode %T", v))
	}
}

func appendSep(b []byte, c byte, s style) []byte {
	b = append(b, c)
	if s == styleDumps {
		b = append(b, ' ')
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString quotes s like Python's json encoder: short escapes for
// \b \f \n \r \t, lower-case \u00XX for other C0 controls and, with ascii,
// \uXXXX (surrogate pairs above the BMP) for everything outside ' '…'~'.
// Invalid UTF-8 is encoded as U+FFFD.
func appendString(b []byte, s string, ascii bool) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '"':
				b = append(b, '\\', '"')
			case c == '\\':
				b = append(b, '\\', '\\')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20 || (ascii && c == 0x7f):
				b = appendU(b, rune(c))
			default:
				b = append(b, c)
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if !ascii {
			b = utf8.AppendRune(b, r) // RuneError for invalid bytes
			continue
		}
		if r >= 0x10000 {
			r -= 0x10000
			b = appendU(b, 0xd800+(r>>10))
			b = appendU(b, 0xdc00+(r&0x3ff))
			continue
		}
		b = appendU(b, r)
	}
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// maxJSONDepth bounds nesting of decoded values (pass-through data from
// other servers and request bodies).
const maxJSONDepth = 32

var errJSONDepth = errors.New("rsdapi: json nested too deeply")

// decodeJSON parses exactly one JSON value from data into the ordered
// representation. Trailing non-space data is an error.
func decodeJSON(data []byte) (value, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	v, err := decodeValue(d, 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("rsdapi: trailing data after json value")
	}
	return v, nil
}

func decodeValue(d *json.Decoder, depth int) (value, error) {
	if depth > maxJSONDepth {
		return nil, errJSONDepth
	}
	tok, err := d.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var o object
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errors.New("rsdapi: json object key is not a string")
				}
				v, err := decodeValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				o.set(k, v)
			}
			if _, err := d.Token(); err != nil { // '}'
				return nil, err
			}
			if o == nil {
				o = object{}
			}
			return o, nil
		case '[':
			a := []value{}
			for d.More() {
				v, err := decodeValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := d.Token(); err != nil { // ']'
				return nil, err
			}
			return a, nil
		}
		return nil, fmt.Errorf("rsdapi: unexpected json delimiter %q", t)
	case json.Number:
		return jsonNumber(t), nil
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("rsdapi: unexpected json token %T", tok)
}
