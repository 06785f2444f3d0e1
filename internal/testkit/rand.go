package testkit

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
)

// Rand returns a deterministic byte stream for seed: the same seed gives the
// same bytes on every run and platform. It is for reproducible tests only,
// never for keys.
func Rand(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}
