package syslog

import "bytes"

// syslog_relay sends text with BSD vis(3) escapes in place of bytes that
// are not printable ASCII (syslog.md §2). AppendVis is the device's
// encoding, AppendUnvis the host's decoding; both append to dst and never
// fail: an escape the decoder does not know is kept as written.

// AppendVis appends src to dst with vis(3) escapes, in the style the
// simulator uses (syslog.md §2.2): printable ASCII and tab as they are, a
// backslash as \134, other control bytes as \^X (DEL as \^?), bytes with
// the high bit as \M-x, \M^X, or \240 for 0xA0.
func AppendVis(dst, src []byte) []byte {
	for _, c := range src {
		switch {
		case c == '\\':
			dst = append(dst, `\134`...)
		case c == '\t' || c >= ' ' && c < 0x7f:
			dst = append(dst, c)
		case c < ' ':
			dst = append(dst, '\\', '^', c+'@')
		case c == 0x7f:
			dst = append(dst, `\^?`...)
		case c == 0xa0:
			dst = append(dst, `\240`...)
		default: // 0x80–0xff
			lo := c & 0x7f
			switch {
			case lo < ' ':
				dst = append(dst, '\\', 'M', '^', lo+'@')
			case lo == 0x7f:
				dst = append(dst, `\M^?`...)
			default:
				dst = append(dst, '\\', 'M', '-', lo)
			}
		}
	}
	return dst
}

// AppendUnvis appends src to dst with every vis(3) escape the references
// have seen decoded: \M-x, \M^X, \^X, three-digit octal \ddd up to \377,
// \\, and the C-style \n \r \t \b \a \v \f \s \0. The result may hold any
// byte, control bytes included: callers that print to a terminal escape
// those again (Printer does).
func AppendUnvis(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		// Copy the run up to the next backslash at once: most lines
		// have none.
		j := bytes.IndexByte(src[i:], '\\')
		if j < 0 {
			return append(dst, src[i:]...)
		}
		dst = append(dst, src[i:i+j]...)
		i += j
		b, n := unvisOne(src[i+1:])
		if n == 0 {
			dst = append(dst, '\\')
			i++
			continue
		}
		dst = append(dst, b)
		i += 1 + n
	}
	return dst
}

// unvisOne decodes the escape after a backslash: the byte and how many
// bytes of rest it used, or n = 0 when rest starts no known escape.
func unvisOne(rest []byte) (b byte, n int) {
	if len(rest) == 0 {
		return 0, 0
	}
	switch c := rest[0]; {
	case c == 'M' && len(rest) >= 3 && rest[1] == '-' && rest[2] > ' ' && rest[2] < 0x7f:
		return rest[2] | 0x80, 3
	case c == 'M' && len(rest) >= 3 && rest[1] == '^' && isCaret(rest[2]):
		return caret(rest[2]) | 0x80, 3
	case c == '^' && len(rest) >= 2 && isCaret(rest[1]):
		return caret(rest[1]), 2
	case isOctal(c) && len(rest) >= 3 && isOctal(rest[1]) && isOctal(rest[2]) && c <= '3':
		return (c-'0')<<6 | (rest[1]-'0')<<3 | (rest[2] - '0'), 3
	case c == '\\':
		return '\\', 1
	}
	if b, ok := cStyle[rest[0]]; ok {
		// \0 followed by octal digits is an octal escape handled above
		// only with three digits; a lone \0 is NUL.
		return b, 1
	}
	return 0, 0
}

var cStyle = map[byte]byte{'n': '\n', 'r': '\r', 't': '\t', 'b': '\b', 'a': '\a', 'v': '\v', 'f': '\f', 's': ' ', '0': 0}

// isCaret reports whether c may follow \^ or \M^: '@'…'_' for control
// bytes 0x00–0x1F and '?' for DEL.
func isCaret(c byte) bool { return c >= '@' && c <= '_' || c == '?' }

func caret(c byte) byte {
	if c == '?' {
		return 0x7f
	}
	return c - '@'
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// appendVisible appends s with control bytes (other than tab) and DEL
// written as vis escapes again, so that nothing a device sends can move a
// terminal's cursor or change its colours.
func appendVisible(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c != 0x7f || c == '\t' {
			continue
		}
		dst = append(dst, s[start:i]...)
		start = i + 1
		switch {
		case c == 0x7f:
			dst = append(dst, `\^?`...)
		default:
			dst = append(dst, '\\', '^', c+'@')
		}
	}
	return append(dst, s[start:]...)
}
