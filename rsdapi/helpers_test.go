package rsdapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/rsdapi"
	"github.com/iosmux/iosmux/rsdapi/rsdapitest"
)

// fixedNow is the clock of every test server.
var fixedNow = time.Date(2025, 1, 1, 0, 0, 20, 0, time.UTC)

type apiKind int

const (
	pmd3 apiKind = iota
	goios
	appium
)

// serve starts the chosen API over reg on loopback.
func serve(t *testing.T, kind apiKind, reg rsdapi.Registry, mod ...func(*rsdapi.Config)) (*httptest.Server, *rsdapi.Server) {
	t.Helper()
	cfg := rsdapi.Config{Registry: reg, Now: func() time.Time { return fixedNow }}
	for _, m := range mod {
		m(&cfg)
	}
	s := rsdapi.New(cfg)
	var h http.Handler
	switch kind {
	case pmd3:
		h = s.PMD3Handler()
	case goios:
		h = s.GoIOSHandler()
	case appium:
		h = s.AppiumHandler()
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, s
}

type reply struct {
	code   int
	header http.Header
	body   string
}

// do sends one request; hdr is "Key: value" lines.
func do(t *testing.T, srv *httptest.Server, method, target, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// want checks status, body and Content-Type ("-" = header must be absent).
func (r reply) want(t *testing.T, code int, contentType, body string) {
	t.Helper()
	if r.code != code {
		t.Errorf("status = %d, want %d (body %q)", r.code, code, r.body)
	}
	if r.body != body {
		t.Errorf("body =\n%s\nwant\n%s", r.body, body)
	}
	got, present := r.header["Content-Type"]
	switch {
	case contentType == "-" && present:
		t.Errorf("Content-Type = %q, want none", got)
	case contentType != "-" && r.header.Get("Content-Type") != contentType:
		t.Errorf("Content-Type = %q, want %q", r.header.Get("Content-Type"), contentType)
	}
}

// sampleRegistry holds two tunnels of device 0 (USB and NCM), one of
// device 1 and one not yet identified.
func sampleRegistry() *rsdapitest.Registry {
	a := rsdapitest.Sample(0)
	ncm := a
	ncm.Key = "fe80::1c2b:3aff:fe4d:5e6f%enp0s20u1"
	ncm.Interface = "utun9"
	ncm.Address = "fd99::1"
	ncm.RSDPort = 60000
	ncm.Path = rsdapi.PathUSBNCM
	anon := rsdapitest.Sample(7)
	anon.UDID = ""
	anon.SerialNumber = ""
	return rsdapitest.New(a, rsdapitest.Sample(1), ncm, anon)
}

// chunkedRequest POSTs body with unknown length (chunked encoding).
func chunkedRequest(t *testing.T, url, body string) reply {
	t.Helper()
	req, err := http.NewRequest("POST", url, io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// doNoFatal GETs url from any goroutine (no t.Fatal); errors become code 0.
func doNoFatal(url string) reply {
	resp, err := http.Get(url)
	if err != nil {
		return reply{body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}
