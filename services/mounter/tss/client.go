package tss

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/iosmux/iosmux/internal/safeplist"
)

// DefaultURL is Apple's signing server (plain HTTP, as pmd3, idevice and
// appium use it).
const DefaultURL = "http://gs.apple.com/TSS/controller?action=2"

// MaxResponse bounds a TSS reply body; tickets are a few kilobytes.
const MaxResponse = 1 << 20

// Client posts personalization requests.
type Client struct {
	// URL is the signing server; "" means DefaultURL.
	URL string
	// HTTP makes the request; nil means http.DefaultClient. The caller's
	// context bounds it.
	HTTP *http.Client
}

// ErrRefused matches every *RefusedError.
var ErrRefused = errors.New("tss: the signing server refused the request")

// RefusedError is a non-zero STATUS from the signing server, with its
// MESSAGE as Apple wrote it.
type RefusedError struct {
	URL     string
	Status  int
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("tss: %s refused the personalization request: STATUS=%d: %s", e.URL, e.Status, e.Message)
}

func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Ticket posts req and returns the ApImg4Ticket (the IM4M manifest the
// device mounts the image with).
func (c *Client) Ticket(ctx context.Context, req map[string]any) ([]byte, error) {
	url := c.URL
	if url == "" {
		url = DefaultURL
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	body, err := Encode(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("tss: %w", err)
	}
	// The headers pmd3, idevice and appium send.
	hr.Header.Set("Cache-Control", "no-cache")
	hr.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	hr.Header.Set("User-Agent", "InetURL/1.0")
	resp, err := hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("tss: posting to %s: %w (set the signing URL with --tss-url when Apple's server is out of reach)", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("tss: reading the reply of %s: %w", url, err)
	}
	if len(b) > MaxResponse {
		return nil, fmt.Errorf("tss: the reply of %s is larger than %d bytes", url, MaxResponse)
	}
	r, perr := ParseResponse(b)
	if resp.StatusCode != http.StatusOK && (perr != nil || r.Status == 0) {
		return nil, fmt.Errorf("tss: %s answered HTTP %s", url, resp.Status)
	}
	if perr != nil {
		return nil, fmt.Errorf("tss: %s: %w", url, perr)
	}
	if r.Status != 0 {
		return nil, &RefusedError{URL: url, Status: r.Status, Message: r.Message}
	}
	return r.Ticket()
}

// Response is a parsed TSS reply.
type Response struct {
	Status  int
	Message string
	// Plist is REQUEST_STRING decoded, nil when absent.
	Plist map[string]any
}

// ParseResponse reads "STATUS=<n>&MESSAGE=<text>[&REQUEST_STRING=<plist>]":
// STATUS and MESSAGE as &-separated pairs, and everything after
// "REQUEST_STRING=" as the plist (it is not escaped and may hold '&').
func ParseResponse(body []byte) (*Response, error) {
	if len(body) > MaxResponse {
		return nil, fmt.Errorf("tss: reply of %d bytes, more than %d", len(body), MaxResponse)
	}
	head, plistPart, hasPlist := bytes.Cut(body, []byte("REQUEST_STRING="))
	r := &Response{Status: -1}
	for _, pair := range strings.Split(strings.TrimSuffix(string(head), "&"), "&") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "STATUS":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("tss: reply STATUS %q is not a number", v)
			}
			r.Status = n
		case "MESSAGE":
			r.Message = v
		}
	}
	if r.Status < 0 {
		return nil, fmt.Errorf("tss: reply without STATUS: %.80q", body)
	}
	if hasPlist {
		var m map[string]any
		if err := safeplist.Unmarshal(plistPart, &m); err != nil {
			return nil, fmt.Errorf("tss: reply's REQUEST_STRING: %w", err)
		}
		if m == nil {
			return nil, errors.New("tss: reply's REQUEST_STRING is not a dictionary")
		}
		r.Plist = m
	}
	return r, nil
}

// Ticket returns the reply's ApImg4Ticket; success needs STATUS 0, MESSAGE
// SUCCESS and the ticket (pmd3 and appium want the message too).
func (r *Response) Ticket() ([]byte, error) {
	if r.Status != 0 {
		return nil, &RefusedError{Status: r.Status, Message: r.Message}
	}
	if r.Message != "SUCCESS" {
		return nil, fmt.Errorf("tss: reply STATUS=0 but MESSAGE %q, want SUCCESS", r.Message)
	}
	t, ok := r.Plist["ApImg4Ticket"].([]byte)
	if !ok || len(t) == 0 {
		return nil, errors.New("tss: successful reply without an ApImg4Ticket")
	}
	return t, nil
}
