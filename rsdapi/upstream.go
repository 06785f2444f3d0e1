package rsdapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Federation (pymobiledevice3 POST /upstream): GET / also lists the tunnels
// of other tunnelds, fetched in parallel, each bounded by a timeout and a
// body limit; a failed upstream is skipped silently (logged at debug).

// hopHeader carries the federation depth on our own upstream fetches. A
// tunneld registered (directly or through others) as its own upstream would
// otherwise fan requests out without end; iosmux instances stop merging past
// maxHops. pymobiledevice3 ignores the header.
const (
	hopHeader = "X-Iosmux-Federation-Hops"
	maxHops   = 4
)

type upstreams struct {
	client  *http.Client
	timeout time.Duration
	max     int
	maxBody int64

	mu   sync.Mutex
	urls map[string]struct{}
}

func newUpstreams(client *http.Client, timeout time.Duration, max int, maxBody int64) *upstreams {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if max <= 0 {
		max = 64
	}
	if client == nil {
		client = &http.Client{
			Timeout: timeout,
			// Upstreams are named explicitly; an environment proxy would
			// only get in the way.
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second},
			// A redirect could point anywhere; pymobiledevice3's requests
			// follows them, but an upstream has no reason to redirect.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &upstreams{client: client, timeout: timeout, max: max, maxBody: maxBody, urls: map[string]struct{}{}}
}

var errTooManyUpstreams = errors.New("rsdapi: too many upstreams")

func (u *upstreams) add(raw string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.urls[raw]; ok {
		return nil
	}
	if len(u.urls) >= u.max {
		return errTooManyUpstreams
	}
	u.urls[raw] = struct{}{}
	return nil
}

func (u *upstreams) remove(raw string) {
	u.mu.Lock()
	delete(u.urls, raw)
	u.mu.Unlock()
}

// sorted is GET /upstream's answer (Python sorted() of str: code-point order,
// which for valid UTF-8 is byte order).
func (u *upstreams) sorted() []string {
	u.mu.Lock()
	list := make([]string, 0, len(u.urls))
	for k := range u.urls {
		list = append(list, k)
	}
	u.mu.Unlock()
	slices.Sort(list)
	return list
}

// upstreamListing is one fetched listing: UDID → entries, in the order the
// upstream sent them.
type upstreamListing = []member

// fetchAll fetches every upstream in parallel and returns the listings that
// parsed, in sorted URL order (pymobiledevice3 iterates its set, whose order
// is arbitrary; sorted is at least stable).
func (u *upstreams) fetchAll(ctx context.Context, hops int, onErr func(url string, err error)) []upstreamListing {
	urls := u.sorted()
	if len(urls) == 0 || hops >= maxHops {
		return nil
	}
	results := make([]upstreamListing, len(urls))
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	for i, raw := range urls {
		wg.Go(func() {
			results[i], errs[i] = u.fetch(ctx, raw, hops+1)
		})
	}
	wg.Wait()
	var out []upstreamListing
	for i := range urls {
		if errs[i] != nil {
			onErr(urls[i], errs[i])
			continue
		}
		out = append(out, results[i])
	}
	return out
}

func (u *upstreams) fetch(ctx context.Context, raw string, hops int) (upstreamListing, error) {
	pu, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if pu.Scheme != "http" && pu.Scheme != "https" {
		return nil, fmt.Errorf("rsdapi: upstream scheme %q not supported", pu.Scheme)
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(hopHeader, strconv.Itoa(hops))
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("rsdapi: upstream answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, u.maxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > u.maxBody {
		return nil, errors.New("rsdapi: upstream listing too large")
	}
	return parseListing(body)
}

// parseListing checks an upstream body has GET /'s shape: an object whose
// values are arrays (JSON null counts as empty, as `result or {}` does in
// pymobiledevice3). Entries themselves pass through unmodified. pymobiledevice3
// answers 500 for the whole request when an upstream sends another shape; we
// skip that upstream instead.
func parseListing(body []byte) (upstreamListing, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	o, ok := v.(object)
	if !ok {
		return nil, errors.New("rsdapi: upstream listing is not a json object")
	}
	for _, m := range o {
		if _, ok := m.val.([]value); !ok {
			return nil, fmt.Errorf("rsdapi: upstream entries for %q are not an array", m.key)
		}
	}
	return o, nil
}

// hopsOf reads the federation depth of an incoming request (0 when absent
// or malformed).
func hopsOf(r *http.Request) int {
	n, err := strconv.Atoi(r.Header.Get(hopHeader))
	if err != nil || n < 0 {
		return 0
	}
	return n
}
