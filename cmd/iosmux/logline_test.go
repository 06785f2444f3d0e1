package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestLogOneLine: multi-line errors and strings never put a literal \n in
// a text log value, nor a line break in a JSON one.
func TestLogOneLine(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var b bytes.Buffer
		log, err := newLogger(&b, "info", format)
		if err != nil {
			t.Fatal(err)
		}
		log.Warn("attempt failed", "err", errors.Join(errors.New("first"), errors.New("second")), "why", "a\r\nb", "n", 3)
		out := b.String()
		if strings.Count(out, "\n") != 1 || strings.Contains(out, `\n`) || strings.Contains(out, `\r`) || !strings.Contains(out, "first; second") || !strings.Contains(out, "a; b") {
			t.Errorf("%s log: %q", format, out)
		}
	}
}
