package rsd

import (
	"testing"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/xpc"
)

func FuzzParseHandshake(f *testing.F) {
	f.Add(testkit.ReadHex(f, "10_rsd_handshake_device.hex"))
	f.Add(testkit.ReadHex(f, "11_rsd_handshake_host.hex"))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := xpc.Decode(in)
		if err != nil {
			return
		}
		h, err := ParseHandshake(m.Body)
		if err != nil {
			return
		}
		// A parsed Handshake re-encodes and parses to the same services.
		m2 := xpc.Message{Flags: xpc.FlagsMsg, Body: h.Body()}
		b, err := m2.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		back, err := xpc.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := ParseHandshake(back.Body)
		if err != nil || len(h2.Services) != len(h.Services) {
			t.Fatalf("reparse: %v, %d vs %d services", err, len(h2.Services), len(h.Services))
		}
	})
}
