//go:build unix

package testkit

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// ProcessCPU is the process's user+system CPU time so far.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPU adds cpu-ns/B: process CPU (both ends, kernel included) per
// byte moved (b.N chunks of BenchChunk), steadier than MB/s on a shared
// machine.
func ReportCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(ProcessCPU()-since)/float64(int64(b.N)*BenchChunk), "cpu-ns/B")
}

// BenchUp sends b.N chunks to a Sink over c and waits for its answer.
func BenchUp(b *testing.B, c net.Conn) {
	b.SetBytes(BenchChunk)
	b.ResetTimer()
	cpu := ProcessCPU()
	defer func() { ReportCPU(b, cpu) }()
	if err := Upload(c, int64(b.N)*BenchChunk); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

// BenchDown reads b.N chunks from a Source over c.
func BenchDown(b *testing.B, c net.Conn) {
	b.SetBytes(BenchChunk)
	b.ResetTimer()
	cpu := ProcessCPU()
	defer func() { ReportCPU(b, cpu) }()
	if err := Download(c, int64(b.N)*BenchChunk); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

// Upload is the application side of BenchUp, for a process of its own:
// n bytes (whole BenchChunks) to a Sink over c, then its answer.
func Upload(c net.Conn, n int64) error {
	buf := make([]byte, BenchChunk)
	for left := n; left > 0; left -= BenchChunk {
		if _, err := c.Write(buf[:min(left, BenchChunk)]); err != nil {
			return err
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return fmt.Errorf("sink's answer: %w", err)
	}
	return nil
}

// Download is the application side of BenchDown: asks a Source over c for
// n bytes and reads them all.
func Download(c net.Conn, n int64) error {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	got, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, BenchChunk))
	if err != nil || got != n {
		return fmt.Errorf("read %d bytes of %d: %v", got, n, err)
	}
	return nil
}
