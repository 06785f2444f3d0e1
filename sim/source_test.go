package sim

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestSourceStream: the first MiB is ChaCha8 with the fixed key, and reads
// of any size continue the same repeating stream.
func TestSourceStream(t *testing.T) {
	var seed [32]byte
	copy(seed[:], "iosmux sim byte source, seed v1")
	block := make([]byte, sourcePeriod)
	rand.NewChaCha8(seed).Read(block)
	want := bytes.Repeat(block, 3)

	got := make([]byte, 0, len(want))
	r := SourceStream()
	buf := make([]byte, 77777) // not a divisor of the period
	for len(got) < len(want) {
		n, err := r.Read(buf[:min(len(buf), len(want)-len(got))])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("SourceStream is not its first MiB of ChaCha8 repeated")
	}
	if _, err := io.ReadFull(SourceStream(), buf); err != nil || !bytes.Equal(buf, block[:len(buf)]) {
		t.Fatal("a new SourceStream does not start at the beginning")
	}
}
