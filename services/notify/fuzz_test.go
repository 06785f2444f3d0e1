package notify

import (
	"testing"

	"howett.net/plist"
)

// FuzzParseMessage: no plist a peer sends panics the reader; a message it
// accepts encodes to a plist that reads back the same.
func FuzzParseMessage(f *testing.F) {
	for _, m := range []Message{{CommandRelay, "com.apple.springboard.lockstate"}, {Command: CommandDeath}, {CommandPost, "x"}} {
		for _, format := range []int{plist.XMLFormat, plist.BinaryFormat} {
			b, err := plist.Marshal(m.plist(), format)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		enc, err := plist.Marshal(m.plist(), plist.BinaryFormat)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseMessage(enc)
		if err != nil || again != m {
			t.Fatalf("round trip of %+v = %+v, %v", m, again, err)
		}
	})
}
