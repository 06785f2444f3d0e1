package testkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Bulk transfer check. The client sends a 16-byte header (upload and
// download sizes, big-endian), then the upload; the server at the same time
// sends the download, then the SHA-256 of what it received and of what it
// sent. Each end hashes independently, so a byte lost, duplicated or
// corrupted anywhere in between shows as a mismatch. Both streams are
// deterministic (Rand) so a failure reproduces.

const (
	bulkUpSeed   = 0x5550 // "UP"
	bulkDownSeed = 0x444e // "DN"
	bulkChunk    = 256 << 10
)

// BulkResult is what one Bulk run measured.
type BulkResult struct {
	Up, Down int64
}

// Bulk runs the client side on c: it uploads up bytes and downloads down
// bytes concurrently, then checks both hashes against the server's. It does
// not close c.
func Bulk(c net.Conn, up, down int64) (BulkResult, error) {
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:8], uint64(up))
	binary.BigEndian.PutUint64(hdr[8:], uint64(down))
	if _, err := c.Write(hdr[:]); err != nil {
		return BulkResult{}, fmt.Errorf("testkit: bulk header: %w", err)
	}
	type sent struct {
		sum [32]byte
		err error
	}
	upc := make(chan sent, 1)
	go func() {
		sum, err := sendStream(c, bulkUpSeed, up)
		upc <- sent{sum, err}
	}()
	h := sha256.New()
	_, rerr := io.CopyBuffer(h, io.LimitReader(c, down), make([]byte, bulkChunk))
	var sums [64]byte
	if rerr == nil {
		_, rerr = io.ReadFull(c, sums[:])
	}
	u := <-upc
	if u.err != nil {
		return BulkResult{}, fmt.Errorf("testkit: bulk upload: %w", u.err)
	}
	if rerr != nil {
		return BulkResult{}, fmt.Errorf("testkit: bulk download: %w", rerr)
	}
	if !bytes.Equal(sums[:32], u.sum[:]) {
		return BulkResult{}, errors.New("testkit: bulk upload arrived corrupted (hash mismatch)")
	}
	if !bytes.Equal(sums[32:], h.Sum(nil)) {
		return BulkResult{}, errors.New("testkit: bulk download arrived corrupted (hash mismatch)")
	}
	return BulkResult{Up: up, Down: down}, nil
}

// ServeBulk runs the server side of Bulk on c and closes c.
func ServeBulk(c net.Conn) error {
	defer c.Close()
	var hdr [16]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("testkit: bulk header: %w", err)
	}
	up := int64(binary.BigEndian.Uint64(hdr[:8]))
	down := int64(binary.BigEndian.Uint64(hdr[8:]))
	if up < 0 || down < 0 {
		return errors.New("testkit: bulk sizes out of range")
	}
	type sent struct {
		sum [32]byte
		err error
	}
	downc := make(chan sent, 1)
	go func() {
		sum, err := sendStream(struct{ io.Writer }{c}, bulkDownSeed, down)
		downc <- sent{sum, err}
	}()
	h := sha256.New()
	n, rerr := io.CopyBuffer(h, io.LimitReader(c, up), make([]byte, bulkChunk))
	if rerr == nil && n != up {
		rerr = io.ErrUnexpectedEOF
	}
	d := <-downc
	if rerr != nil {
		return fmt.Errorf("testkit: bulk upload: %w", rerr)
	}
	if d.err != nil {
		return fmt.Errorf("testkit: bulk download: %w", d.err)
	}
	var sums []byte
	sums = h.Sum(sums)
	sums = append(sums, d.sum[:]...)
	if _, err := c.Write(sums); err != nil {
		return fmt.Errorf("testkit: bulk hashes: %w", err)
	}
	return nil
}

// sendStream writes n deterministic bytes and returns their hash.
func sendStream(w io.Writer, seed uint64, n int64) ([32]byte, error) {
	h := sha256.New()
	r := Rand(seed)
	buf := make([]byte, bulkChunk)
	for left := n; left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		r.Read(chunk)
		h.Write(chunk)
		if _, err := w.Write(chunk); err != nil {
			return [32]byte{}, err
		}
		left -= int64(len(chunk))
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
