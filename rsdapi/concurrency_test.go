package rsdapi_test

import (
	stdjson "encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
)

// TestConcurrentClients runs 200 clients against all three APIs while the
// table flaps underneath; every reply must be a 200 with a well-formed
// listing. Run under -race this also checks the shared state.
func TestConcurrentClients(t *testing.T) {
	const clients, rounds = 200, 10
	reg := rsdapitest.New()
	s := rsdapi.New(rsdapi.Config{Registry: reg})
	servers := []*httptest.Server{
		httptest.NewServer(s.PMD3Handler()),
		httptest.NewServer(s.GoIOSHandler()),
		httptest.NewServer(s.AppiumHandler()),
	}
	for _, srv := range servers {
		defer srv.Close()
	}
	paths := []string{"/", "/tunnels", "/remotexpc/tunnels"}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()

	stop := make(chan struct{})
	var flapper sync.WaitGroup
	flapper.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ts := make([]rsdapi.Tunnel, i%17)
			for j := range ts {
				ts[j] = rsdapitest.Sample(j)
			}
			reg.Set(ts...)
			s.Notify()
		}
	})

	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for r := range rounds {
				k := (c + r) % 3
				resp, err := client.Get(servers[k].URL + paths[k])
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !stdjson.Valid(body) {
					errs <- fmt.Errorf("client %d %s: %d %q %v", c, paths[k], resp.StatusCode, body, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flapper.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkPMD3List measures GET / (16 tunnels) from 1 and from 200
// concurrent keep-alive clients, each with its connection already open, and
// reports latency percentiles. One op is one request.
func BenchmarkPMD3List(b *testing.B) {
	for _, n := range []int{1, 200} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchList(b, n) })
	}
}

func benchList(b *testing.B, clients int) {
	ts := make([]rsdapi.Tunnel, 16)
	for i := range ts {
		ts[i] = rsdapitest.Sample(i)
	}
	srv := httptest.NewServer(rsdapi.New(rsdapi.Config{Registry: rsdapitest.New(ts...)}).PMD3Handler())
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	get := func() error {
		resp, err := client.Get(srv.URL + "/")
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	}
	// Open every client's connection before timing.
	var warm sync.WaitGroup
	for range clients {
		warm.Go(func() { get() })
	}
	warm.Wait()

	per := (b.N + clients - 1) / clients
	lat := make([][]time.Duration, clients)
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for range per {
				start := time.Now()
				if err := get(); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if n := len(all); n > 0 {
		b.ReportMetric(float64(all[n/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[n*99/100].Microseconds()), "p99-µs")
	}
}
