package rsdapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Query strings are parsed the way Starlette does (urllib.parse.parse_qsl
// with keep_blank_values: pairs split on '&' only, '+' is a space, a name
// without '=' has an empty value, the last repetition wins) except that a
// malformed percent-escape or invalid UTF-8 is refused with 400 instead of
// being kept literally: no well-behaved client sends one, and a clear error
// beats a UDID that silently contains "%zz".

type query map[string]string

var errMalformedQuery = errors.New("rsdapi: malformed query string")

// maxQueryPairs bounds the work a hostile query can cause.
const maxQueryPairs = 64

func parseQuery(raw string) (query, error) {
	q := query{}
	if raw == "" {
		return q, nil
	}
	pairs := strings.Split(raw, "&")
	if len(pairs) > maxQueryPairs {
		return nil, errMalformedQuery
	}
	for _, p := range pairs {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		dk, err := unescapeQuery(k)
		if err != nil {
			return nil, err
		}
		dv, err := unescapeQuery(v)
		if err != nil {
			return nil, err
		}
		q[dk] = dv
	}
	return q, nil
}

func unescapeQuery(s string) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		if !utf8.ValidString(s) {
			return "", errMalformedQuery
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b = append(b, ' ')
		case '%':
			if i+2 >= len(s) {
				return "", errMalformedQuery
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", errMalformedQuery
			}
			b = append(b, byte(n))
			i += 2
		default:
			b = append(b, c)
		}
	}
	if !utf8.Valid(b) {
		return "", errMalformedQuery
	}
	return string(b), nil
}

func (q query) get(k string) (string, bool) {
	v, ok := q[k]
	return v, ok
}

// require returns a required query parameter or writes FastAPI's 422.
func (q query) require(w http.ResponseWriter, k string) (string, bool) {
	v, ok := q[k]
	if !ok {
		writeCompact(w, http.StatusUnprocessableEntity, object{{"detail", []value{
			object{{"type", "missing"}, {"loc", []value{"query", k}}, {"msg", "Field required"}, {"input", nil}},
		}}})
	}
	return v, ok
}

// pmd3Query parses the request's query or writes a 400.
func pmd3Query(w http.ResponseWriter, r *http.Request) (query, bool) {
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		pmd3Detail(w, http.StatusBadRequest, "malformed query string")
		return nil, false
	}
	return q, true
}

// pyQuote is urllib.parse.quote(url, safe=":/%#?=@[]!$&'()*+,;"), which
// Starlette's RedirectResponse applies to the Location it sends.
func pyQuote(s string) string {
	const safe = ":/%#?=@[]!$&'()*+,;_.-~"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(safe, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte("0123456789ABCDEF"[c>>4])
		b.WriteByte("0123456789ABCDEF"[c&15])
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }
