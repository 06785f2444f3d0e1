package rsdapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultPMD3Addr is where pymobiledevice3's clients look for tunneld
// (TUNNELD_DEFAULT_ADDRESS).
var DefaultPMD3Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(DefaultPMD3Port))

// ErrNoTunnel means tunneld answered but lists no tunnel for the device.
var ErrNoTunnel = errors.New("rsdapi: no tunnel for this device")

// Client reads a running tunneld's pymobiledevice3 API, as
// pymobiledevice3's --tunnel UDID does: GET / and the device's entry.
type Client struct {
	// Addr is tunneld's API, HOST:PORT; empty means DefaultPMD3Addr.
	Addr string
	// HTTP defaults to a client without proxies and a 5 s timeout.
	HTTP *http.Client
}

// Listed is one entry of GET /: a tunnel and the RSD inside it.
type Listed struct {
	UDID      string
	Address   string // tunnel-address
	Port      uint16 // tunnel-port
	Interface string // pymobiledevice3's table key, e.g. usbmux-<serial>-USB
}

// RSD is the listed RSD endpoint.
func (l Listed) RSD() (netip.AddrPort, error) {
	a, err := netip.ParseAddr(l.Address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("rsdapi: device %s: tunnel-address %q: %w", l.UDID, l.Address, err)
	}
	return netip.AddrPortFrom(a, l.Port), nil
}

// maxListing bounds GET /'s body.
const maxListing = 4 << 20

func (c *Client) addr() string {
	if c.Addr == "" {
		return DefaultPMD3Addr
	}
	return c.Addr
}

// Tunnels returns every listed tunnel, devices in UDID order, each device's
// tunnels in the listing's order.
func (c *Client) Tunnels(ctx context.Context) ([]Listed, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	}
	url := "http://" + c.addr() + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("rsdapi: tunneld at %s: %w", c.addr(), err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rsdapi: tunneld at %s: %w", c.addr(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListing+1))
	if err != nil {
		return nil, fmt.Errorf("rsdapi: tunneld at %s: GET /: %w", c.addr(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rsdapi: tunneld at %s: GET /: %s", c.addr(), resp.Status)
	}
	if len(body) > maxListing {
		return nil, fmt.Errorf("rsdapi: tunneld at %s: GET /: listing over %d bytes", c.addr(), maxListing)
	}
	return parseTunnels(body)
}

// parseTunnels decodes GET /'s body: {"UDID": [{"tunnel-address", "tunnel-port", "interface"}, …], …}.
func parseTunnels(body []byte) ([]Listed, error) {
	var m map[string][]struct {
		Address   string `json:"tunnel-address"`
		Port      uint16 `json:"tunnel-port"`
		Interface string `json:"interface"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("rsdapi: GET /: %w", err)
	}
	udids := make([]string, 0, len(m))
	for u := range m {
		udids = append(udids, u)
	}
	slices.Sort(udids)
	var out []Listed
	for _, u := range udids {
		for _, e := range m[u] {
			out = append(out, Listed{UDID: u, Address: e.Address, Port: e.Port, Interface: e.Interface})
		}
	}
	return out, nil
}

// Find returns udid's first listed tunnel (dashes and case ignored);
// ErrNoTunnel when tunneld lists none for it.
func (c *Client) Find(ctx context.Context, udid string) (Listed, error) {
	all, err := c.Tunnels(ctx)
	if err != nil {
		return Listed{}, err
	}
	for _, l := range all {
		if sameUDID(l.UDID, udid) {
			return l, nil
		}
	}
	return Listed{}, fmt.Errorf("%w: tunneld at %s lists no %s", ErrNoTunnel, c.addr(), udid)
}

func sameUDID(a, b string) bool {
	return strings.EqualFold(strings.ReplaceAll(a, "-", ""), strings.ReplaceAll(b, "-", ""))
}
