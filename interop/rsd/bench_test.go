package rsd_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	goxpc "github.com/danielpaulus/go-ios/ios/xpc"

	"github.com/iosmux/iosmux/interop/internal/testenv"
	"github.com/iosmux/iosmux/xpc"
)

// handshakeVector is vector 10, the example device RSD Handshake (3072 bytes).
func handshakeVector(b *testing.B) []byte {
	s, err := os.ReadFile(filepath.Join(testenv.RepoDir(), "xpc", "testdata", "10_rsd_handshake_device.hex"))
	if err != nil {
		b.Fatal(err)
	}
	v, err := hex.DecodeString(strings.TrimSpace(string(s)))
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkXPCDecode compares decoding the RSD Handshake with our codec and
// go-ios's, in the same run (docs/perf.md).
func BenchmarkXPCDecode(b *testing.B) {
	in := handshakeVector(b)
	b.Run("iosmux", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := xpc.Decode(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-ios", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := goxpc.DecodeMessage(bytes.NewReader(in)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkXPCEncode compares encoding the same message.
func BenchmarkXPCEncode(b *testing.B) {
	in := handshakeVector(b)
	ours, err := xpc.Decode(in)
	if err != nil {
		b.Fatal(err)
	}
	theirs, err := goxpc.DecodeMessage(bytes.NewReader(in))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("iosmux", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		buf := make([]byte, 0, len(in))
		for b.Loop() {
			var err error
			if buf, err = ours.AppendBinary(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-ios", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := goxpc.EncodeMessage(&buf, goxpc.Message{Flags: theirs.Flags, Body: theirs.Body, Id: 2}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
