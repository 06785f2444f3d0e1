package rsdapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// DefaultGoIOSAddr is where go-ios's clients look for its agent.
var DefaultGoIOSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(DefaultGoIOSPort))

// GoIOSTunnel is one tunnel as the go-ios agent API lists it
// (tunneld-api.md §2).
type GoIOSTunnel struct {
	Address       string `json:"address"`
	RSDPort       int    `json:"rsdPort"`
	UDID          string `json:"udid"`
	Userspace     bool   `json:"userspaceTun"`
	UserspacePort int    `json:"userspaceTunPort"`
}

// GoIOSClient reads a running tunneld's go-ios agent API: whether a
// device's tunnel is a userspace one, and the 127.0.0.1 port of its
// userspace proxy.
type GoIOSClient struct {
	// Addr is the API, HOST:PORT; empty means DefaultGoIOSAddr.
	Addr string
	// HTTP defaults to a client without proxies and a 5 s timeout.
	HTTP *http.Client
}

// Tunnel returns udid's tunnel; ErrNoTunnel when the agent lists none.
func (c *GoIOSClient) Tunnel(ctx context.Context, udid string) (GoIOSTunnel, error) {
	addr := c.Addr
	if addr == "" {
		addr = DefaultGoIOSAddr
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/tunnel/"+url.PathEscape(udid), nil)
	if err != nil {
		return GoIOSTunnel{}, fmt.Errorf("rsdapi: go-ios agent at %s: %w", addr, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return GoIOSTunnel{}, fmt.Errorf("rsdapi: go-ios agent at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return GoIOSTunnel{}, fmt.Errorf("rsdapi: go-ios agent at %s: %w", addr, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return GoIOSTunnel{}, fmt.Errorf("%w: the go-ios agent at %s lists no %s", ErrNoTunnel, addr, udid)
	default:
		return GoIOSTunnel{}, fmt.Errorf("rsdapi: go-ios agent at %s: GET /tunnel/%s: %s", addr, udid, resp.Status)
	}
	var t GoIOSTunnel
	if err := json.Unmarshal(body, &t); err != nil {
		return GoIOSTunnel{}, fmt.Errorf("rsdapi: go-ios agent at %s: GET /tunnel/%s: %w", addr, udid, err)
	}
	return t, nil
}
