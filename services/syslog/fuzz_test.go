package syslog

import (
	"bytes"
	"context"
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
)

// FuzzParseLine: any bytes from a device decode and parse without a panic;
// a parsed line prints back to text that parses to the same entry, and
// the device's encoding of any text decodes back to it.
func FuzzParseLine(f *testing.F) {
	wire := testkit.ReadHex(f, "log03_syslog_relay_stream.hex")
	for _, l := range bytes.Split(wire, []byte("\n\x00")) {
		f.Add(l)
	}
	f.Add([]byte(`Jan 12 23:59:01 iPhone a b(c)[0] <Fault>: \M^@\^?\400\`))
	f.Add([]byte("Dec 31 00:00:00 iPhone x[1] <Error>: m [2] <Info>: z"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		line := string(AppendUnvis(nil, raw))
		e, err := ParseLine(line)
		if e.Raw != line {
			t.Fatalf("Raw = %q, want the line %q", e.Raw, line)
		}
		if err != nil {
			if e.Parsed {
				t.Fatal("error with Parsed set")
			}
			return
		}
		again, err := ParseLine(e.String())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", e.String(), err)
		}
		again.Raw = e.Raw
		if again != e {
			t.Fatalf("re-parse = %+v, want %+v", again, e)
		}
		if got := AppendUnvis(nil, AppendVis(nil, raw)); !bytes.Equal(got, raw) {
			t.Fatalf("vis round trip of %q = %q", raw, got)
		}
	})
}

// FuzzClient: the reader never panics or returns more than its limit on
// any stream.
func FuzzClient(f *testing.F) {
	f.Add(testkit.ReadHex(f, "log03_syslog_relay_stream.hex"), 0)
	f.Add([]byte("a\x00\n\x00\x00\\M-"), 3)
	f.Fuzz(func(t *testing.T, wire []byte, max int) {
		max = max%200 + 1
		if max <= 0 {
			max += 200
		}
		c := NewClient(fakeConn{bytes.NewReader(wire)}, max)
		c.Run(context.Background(), func(e *Entry) error {
			// Decoding never makes a line longer than what was read.
			if len(e.Raw) > max {
				t.Fatalf("line of %d bytes with limit %d", len(e.Raw), max)
			}
			return nil
		})
	})
}
