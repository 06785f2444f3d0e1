package xpc

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func seedVectors(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(mustHex(f, v.Hex))
	}
	for _, name := range []string{"goios_xpc_dict.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// checkStable re-encodes an accepted message and requires the result to decode
// to the same bytes again (decode→encode→decode is stable).
func checkStable(t *testing.T, opts DecodeOptions, m Message) {
	b1, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatalf("decoded message does not encode: %v", err)
	}
	m2, err := opts.Decode(b1)
	if err != nil {
		t.Fatalf("re-encoded message does not decode: %v\n%x", err, b1)
	}
	b2, err := m2.AppendBinary(nil)
	if err != nil || !bytes.Equal(b1, b2) {
		t.Fatalf("unstable round trip:\n%x\n%x", b1, b2)
	}
}

func FuzzDecode(f *testing.F) {
	seedVectors(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		opts := DecodeOptions{MaxBody: 1 << 20, KernelObjects: len(in)%2 == 0}
		m, err := opts.Decode(in)
		if err != nil {
			return
		}
		checkStable(t, opts, m)
	})
}

func FuzzDecodeValue(f *testing.F) {
	for _, v := range loadVectors(f) {
		b := mustHex(f, v.Hex)
		if len(b) > HeaderLen+payloadHeaderLen {
			f.Add(b[HeaderLen+payloadHeaderLen:])
		}
	}
	f.Add([]byte{0, 0xa0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0})
	// Handles (the dylib socket's endpoint handle) are tried on odd-length
	// inputs.
	f.Add([]byte{0x00, 0x20, 0x01, 0x00, 7, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		opts := DecodeOptions{MaxDepth: 16, Handles: len(in)%2 == 1}
		v, err := opts.DecodeValue(in)
		if err != nil {
			return
		}
		b1, err := AppendValue(nil, v)
		if err != nil {
			t.Fatalf("decoded value does not encode: %v", err)
		}
		v2, err := opts.DecodeValue(b1)
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		b2, _ := AppendValue(nil, v2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("unstable round trip")
		}
	})
}
