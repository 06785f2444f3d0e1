//go:build unix

package testkit

import (
	"encoding/binary"
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
	buf := make([]byte, BenchChunk)
	b.SetBytes(BenchChunk)
	b.ResetTimer()
	cpu := ProcessCPU()
	defer func() { ReportCPU(b, cpu) }()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

// BenchDown reads b.N chunks from a Source over c.
func BenchDown(b *testing.B, c net.Conn) {
	buf := make([]byte, BenchChunk)
	b.SetBytes(BenchChunk)
	b.ResetTimer()
	cpu := ProcessCPU()
	defer func() { ReportCPU(b, cpu) }()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(b.N)*BenchChunk)
	c.Write(hdr[:])
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, buf)
	if err != nil || n != int64(b.N)*BenchChunk {
		b.Fatalf("read %d bytes, %v", n, err)
	}
	b.StopTimer()
}
