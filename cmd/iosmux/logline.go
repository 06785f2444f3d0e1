package main

import (
	"log/slog"
	"strings"
)

// oneLine is the slog ReplaceAttr of every handler: a value whose text
// spans lines (an errors.Join, a device's or peer's message) is joined with
// "; ", so a text log never shows a literal \n inside a value and every
// record stays one line for grep and journald.
func oneLine(_ []string, a slog.Attr) slog.Attr {
	var s string
	switch a.Value.Kind() {
	case slog.KindString:
		s = a.Value.String()
	case slog.KindAny:
		err, ok := a.Value.Any().(error)
		if !ok || err == nil {
			return a
		}
		s = err.Error()
	default:
		return a
	}
	if !strings.ContainsAny(s, "\r\n") {
		return a
	}
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return slog.String(a.Key, strings.Join(lines, "; "))
}
