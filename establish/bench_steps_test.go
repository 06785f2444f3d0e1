//go:build unix

package establish

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/internal/testkit"
)

// BenchmarkEstablishSteps is set-up time by step (docs/perf.md "set-up
// time by step"): Establish from a sighting to a running tunnel against the
// fixture device in this process, userspace host side, then Close; each
// step's mean goes out as ms-<step> (Tunnel.Steps), the whole as
// ms-total, and the process's CPU (host and device roles together) as
// cpu-ms/op.
//
//	P1       usbmux sighting: pair record, lockdown session, StartService,
//	         service TLS, CDTunnel, TUN
//	P3-tcp   remotepairing sighting: control connection, pairing
//	         handshake, pair-verify, createListener, listener connection,
//	         TLS-PSK, CDTunnel, TUN
//	P3-quic  the same with the QUIC client key and QUIC handshake, each
//	         attempt after the key made ahead is ready (attaches further
//	         apart than one RSA-2048 generation, ~100 ms of CPU)
//	P3-quic-back-to-back  one attempt right after the other: the key made
//	         ahead is never ready, each waits for one
func BenchmarkEstablishSteps(b *testing.B) {
	f := newFixture(b, fixtureConfig{})
	for _, p := range []struct {
		name  string
		ev    discovery.Event
		proto Protocol
		// keyReady waits (untimed) for the QUIC key made ahead.
		keyReady bool
	}{
		{"P1", f.usbmuxEvent(), TCP, false},
		{"P3-tcp", f.rpEvent(), TCP, false},
		{"P3-quic", f.rpEvent(), QUIC, true},
		{"P3-quic-back-to-back", f.rpEvent(), QUIC, false},
	} {
		b.Run(p.name, func(b *testing.B) {
			hs := userspaceSide(b)
			opt := f.options(hs.newTUN, p.proto)
			opt.Usbmux = f.mux
			sum := map[string]time.Duration{}
			var order []string
			var total time.Duration
			cpu := testkit.ProcessCPU()
			b.ResetTimer()
			if p.keyReady {
				PrepareQUIC()
			}
			for range b.N {
				if p.keyReady {
					b.StopTimer()
					for !quicKeys.ready() {
						time.Sleep(time.Millisecond)
					}
					b.StartTimer()
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				start := time.Now()
				tn, err := Establish(ctx, p.ev, opt)
				total += time.Since(start)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range tn.Steps {
					if _, ok := sum[s.Step]; !ok {
						order = append(order, s.Step)
					}
					sum[s.Step] += s.Took
				}
				tn.Close()
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(testkit.ProcessCPU()-cpu)/n/1e6, "cpu-ms/op")
			b.ReportMetric(float64(total)/n/1e6, "ms-total")
			var steps time.Duration
			for _, s := range order {
				b.ReportMetric(float64(sum[s])/n/1e6, "ms-"+strings.ReplaceAll(s, " ", "-"))
				steps += sum[s]
			}
			if steps > total {
				b.Fatalf("steps add up to %v, more than the %v Establish took", steps, total)
			}
		})
	}
}
