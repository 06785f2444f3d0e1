package tlspsk

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkThroughput moves bulk data one way over loopback TCP: tlspsk
// with each suite, and crypto/tls TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384 (the
// same AEAD as 0x00A9) as the reference, in the same run. docs/perf.md
// records the figures.
func BenchmarkThroughput(b *testing.B) {
	for _, id := range []uint16{TLS_PSK_WITH_AES_256_GCM_SHA384, TLS_PSK_WITH_AES_128_GCM_SHA256,
		TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, TLS_PSK_WITH_AES_256_CBC_SHA384, TLS_PSK_WITH_AES_128_CBC_SHA} {
		b.Run("tlspsk/"+CipherSuiteName(id), func(b *testing.B) {
			a, s := tcpPipe(b)
			ccfg := &Config{PSK: testPSK, CipherSuites: []uint16{id}}
			c, srv := Client(a, ccfg), Server(s, &Config{PSK: testPSK})
			if cerr, serr := handshakePair(b, c, srv); cerr != nil || serr != nil {
				b.Fatal(cerr, serr)
			}
			benchCopy(b, c, srv)
		})
	}
	b.Run("crypto-tls/TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", func(b *testing.B) {
		a, s := tcpPipe(b)
		cert := benchCert(b)
		c := tls.Client(a, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}})
		srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})
		errc := make(chan error, 1)
		go func() { errc <- srv.Handshake() }()
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		if got := c.ConnectionState().CipherSuite; got != tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 {
			b.Fatalf("crypto/tls negotiated %s", tls.CipherSuiteName(got))
		}
		benchCopy(b, c, srv)
	})
}

const benchChunk = 64 << 10

// benchCopy writes b.N chunks on w while r drains them. Besides wall-clock
// throughput it reports the process CPU time per byte moved (both ends,
// kernel included), which a machine shared with other work disturbs far
// less than MB/s.
func benchCopy(b *testing.B, w, r net.Conn) {
	buf := make([]byte, benchChunk)
	rand.Read(buf)
	total := int64(b.N) * benchChunk
	done := make(chan error, 1)
	go func() {
		rbuf := make([]byte, benchChunk)
		_, err := io.CopyBuffer(io.Discard, io.LimitReader(r, total), rbuf)
		done <- err
	}()
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(total), "cpu-ns/B")
}

var benchCertOnce = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
})

func benchCert(b *testing.B) tls.Certificate {
	cert, err := benchCertOnce()
	if err != nil {
		b.Fatal(err)
	}
	return cert
}

// BenchmarkRecords is the tunnel's use of the record layer: batches of
// 32 packets of one size, one record each, sent with WriteRecords and read
// with ReadRecords into packet buffers, over loopback TCP, per suite and
// packet size (80 B: a TCP ACK; 1280; 8000: the host's default largest
// packet; 16000: the MTU). Besides the process's cpu-ns/B it reports the
// writing and the reading goroutine's own CPU per byte (w-cpu-ns/B,
// r-cpu-ns/B: each locked to an OS thread and timed with RUSAGE_THREAD,
// kernel included; loopback's receive processing mostly lands on the
// writer), so seal and open costs show apart.
func BenchmarkRecords(b *testing.B) {
	for _, id := range []uint16{TLS_PSK_WITH_AES_256_GCM_SHA384, TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, TLS_PSK_WITH_AES_256_CBC_SHA384} {
		for _, size := range []int{80, 1280, 8000, 16000} {
			b.Run(fmt.Sprintf("%s/%d", CipherSuiteName(id), size), func(b *testing.B) {
				a, s := tcpPipe(b)
				c, srv := Client(a, &Config{PSK: testPSK, CipherSuites: []uint16{id}}), Server(s, &Config{PSK: testPSK})
				if cerr, serr := handshakePair(b, c, srv); cerr != nil || serr != nil {
					b.Fatal(cerr, serr)
				}
				benchRecords(b, c, srv, size)
			})
		}
	}
}

const recordsBatch = 32

func benchRecords(b *testing.B, w, r *Conn, size int) {
	pkts := make([][]byte, recordsBatch)
	for i := range pkts {
		pkts[i] = make([]byte, size)
		rand.Read(pkts[i])
	}
	total := int64(b.N) * recordsBatch * int64(size)
	type result struct {
		cpu time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t0 := threadCPU()
		bufs := make([][]byte, recordsBatch)
		for i := range bufs {
			bufs[i] = make([]byte, maxPlaintext+64)
		}
		sizes := make([]int, recordsBatch)
		var got int64
		for got < total {
			n, err := r.ReadRecords(bufs, sizes)
			if err != nil {
				done <- result{err: err}
				return
			}
			for _, m := range sizes[:n] {
				if m != size {
					done <- result{err: fmt.Errorf("record of %d bytes, want %d", m, size)}
					return
				}
				got += int64(m)
			}
		}
		done <- result{cpu: threadCPU() - t0}
	}()
	b.SetBytes(recordsBatch * int64(size))
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	cpu, wcpu := processCPU(), threadCPU()
	for range b.N {
		if _, err := w.WriteRecords(pkts); err != nil {
			b.Fatal(err)
		}
	}
	wcpu = threadCPU() - wcpu
	res := <-done
	if res.err != nil {
		b.Fatal(res.err)
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(total), "cpu-ns/B")
	b.ReportMetric(float64(wcpu)/float64(total), "w-cpu-ns/B")
	b.ReportMetric(float64(res.cpu)/float64(total), "r-cpu-ns/B")
}
