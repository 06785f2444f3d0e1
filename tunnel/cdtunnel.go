package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
)

// CDTunnel handshake (tunnel.md §2): one frame each way, host first.
//
//	"CDTunnel" (8 bytes) || u16be N || N bytes of JSON
//
// go-ios writes a NUL and a one-byte length and reads only the low byte of the
// length (tunnel.md §2.5); we implement the true u16be both ways.

const (
	magic = "CDTunnel"

	// frameHeaderLen is the magic plus the length field.
	frameHeaderLen = len(magic) + 2

	// MaxHandshakeBody bounds the JSON body we accept. Real bodies are about
	// 50 (request) and 200 (response) bytes; the field allows 65535.
	MaxHandshakeBody = 4096

	// StreamMTU is the MTU iosmux asks for on byte-stream transports (P1 and
	// TCP+TLS-PSK), QUICMTU the one for QUIC datagrams (tunnel.md §2.2, as
	// pmd3 does).
	StreamMTU = 16000
	QUICMTU   = 1420

	// MinMTU is the IPv6 minimum link MTU (RFC 8200 §5): a response
	// below it cannot carry IPv6, and no transport may offer less.
	MinMTU = 1280
	// maxMTU is the largest MTU the 16-bit IPv6 payload length allows
	// without jumbograms, which no reference supports (tunnel.md §3.1).
	maxMTU = 40 + math.MaxUint16

	// defaultResponseMTU and defaultPrefixLen apply when the response omits
	// clientParameters.mtu or netmask (tunnel.md §2.3, rule 2, as idevice).
	defaultResponseMTU = 1500
	defaultPrefixLen   = 64

	typeRequest  = "clientHandshakeRequest"
	typeResponse = "serverHandshakeResponse"
)

// Request is the host's handshake request.
type Request struct {
	// MTU is the MTU the host asks for; 0 when the request did not say.
	MTU int
}

// Params is the device's handshake response: everything the host needs to
// configure its side of the link.
type Params struct {
	// ClientAddress is the address the host assigns to its TUN interface.
	ClientAddress netip.Addr
	// PrefixLen is the link prefix from clientParameters.netmask (observed
	// /64).
	PrefixLen int
	// MTU is the MTU the host uses on its TUN interface
	// (clientParameters.mtu).
	MTU int
	// ServerAddress is the device inside the tunnel (the RSD address).
	ServerAddress netip.Addr
	// ServerRSDPort is the trusted RSD's TCP port on ServerAddress.
	ServerRSDPort uint16
}

// ClientPrefix returns the host address with the link prefix, as assigned to
// the TUN interface.
func (p Params) ClientPrefix() netip.Prefix {
	return netip.PrefixFrom(p.ClientAddress, p.PrefixLen)
}

// Netmask returns the prefix as an IPv6 mask in text form
// ("ffff:ffff:ffff:ffff::" for /64).
func (p Params) Netmask() string {
	var m [16]byte
	for i := 0; i < p.PrefixLen && i < 128; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(m).String()
}

func (p Params) validate() error {
	switch {
	case !p.ClientAddress.Is6() || p.ClientAddress.Zone() != "":
		return fmt.Errorf("%w: client address %v is not an IPv6 address", ErrHandshake, p.ClientAddress)
	case !p.ServerAddress.Is6() || p.ServerAddress.Zone() != "":
		return fmt.Errorf("%w: server address %v is not an IPv6 address", ErrHandshake, p.ServerAddress)
	case p.PrefixLen < 0 || p.PrefixLen > 128:
		return fmt.Errorf("%w: prefix length %d", ErrHandshake, p.PrefixLen)
	case p.MTU < MinMTU || p.MTU > maxMTU:
		return fmt.Errorf("%w: mtu %d outside [%d, %d]", ErrHandshake, p.MTU, MinMTU, maxMTU)
	case p.ServerRSDPort == 0:
		return fmt.Errorf("%w: no serverRSDPort", ErrHandshake)
	}
	return nil
}

// ErrHandshake marks a malformed or unexpected CDTunnel frame.
var ErrHandshake = errors.New("tunnel: bad CDTunnel handshake")

// appendFrame appends the frame header and body.
func appendFrame(b, body []byte) []byte {
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// parseFrame splits one complete frame into its JSON body. It rejects bad
// magic, a body over MaxHandshakeBody, and trailing bytes.
func parseFrame(b []byte) ([]byte, error) {
	if len(b) < frameHeaderLen {
		return nil, fmt.Errorf("%w: frame of %d bytes is shorter than its header", ErrHandshake, len(b))
	}
	if string(b[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: magic %q, want %q", ErrHandshake, b[:len(magic)], magic)
	}
	n := int(binary.BigEndian.Uint16(b[len(magic):]))
	if n > MaxHandshakeBody {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrHandshake, n, MaxHandshakeBody)
	}
	if len(b)-frameHeaderLen != n {
		return nil, fmt.Errorf("%w: length field %d, frame carries %d bytes", ErrHandshake, n, len(b)-frameHeaderLen)
	}
	return b[frameHeaderLen:], nil
}

// readFrame reads exactly one frame and nothing more: bytes after it belong
// to the IPv6 stream (tunnel.md §2.3, rule 3).
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("tunnel: read CDTunnel header: %w", err)
	}
	if string(hdr[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: magic %q, want %q", ErrHandshake, hdr[:len(magic)], magic)
	}
	n := int(binary.BigEndian.Uint16(hdr[len(magic):]))
	if n > MaxHandshakeBody {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrHandshake, n, MaxHandshakeBody)
	}
	frame := make([]byte, frameHeaderLen+n)
	copy(frame, hdr[:])
	if _, err := io.ReadFull(r, frame[frameHeaderLen:]); err != nil {
		return nil, fmt.Errorf("tunnel: read CDTunnel body: %w", err)
	}
	return frame, nil
}

// Wire shapes. Field order gives sorted keys without spaces, as go-ios and
// idevice emit; the device must accept any order (tunnel.md §2.5).
type wireRequest struct {
	MTU  *jsonInt `json:"mtu,omitempty"`
	Type string   `json:"type"`
}

type wireClientParams struct {
	Address string   `json:"address"`
	MTU     *jsonInt `json:"mtu,omitempty"`
	Netmask *string  `json:"netmask,omitempty"`
}

type wireResponse struct {
	ClientParameters *wireClientParams `json:"clientParameters"`
	ServerAddress    string            `json:"serverAddress"`
	ServerRSDPort    *jsonInt          `json:"serverRSDPort,omitempty"`
	Type             string            `json:"type"`
}

// jsonInt is a JSON number literal kept as text; unlike json.Number it
// refuses a quoted string.
type jsonInt string

func (n jsonInt) MarshalJSON() ([]byte, error) { return []byte(n), nil }

func (n *jsonInt) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] == '"' || b[0] == 'n' || b[0] == 't' || b[0] == 'f' || b[0] == '[' || b[0] == '{' {
		return fmt.Errorf("%s is not a number", b)
	}
	*n = jsonInt(b)
	return nil
}

func newJSONInt(v int) *jsonInt {
	n := jsonInt(strconv.Itoa(v))
	return &n
}

// decodeJSON decodes exactly one JSON object from body into v; only
// whitespace may follow it.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: bytes after the JSON object", ErrHandshake)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: bytes after the JSON object", ErrHandshake)
	}
	return nil
}

// intField parses an optional integer in [lo, hi]; absent gives def.
func intField(n *jsonInt, name string, def, lo, hi int64) (int64, error) {
	if n == nil {
		return def, nil
	}
	v, err := strconv.ParseInt(string(*n), 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%w: %s %q is not an integer in [%d, %d]", ErrHandshake, name, string(*n), lo, hi)
	}
	return v, nil
}

// AppendRequest appends the request frame for mtu.
func AppendRequest(b []byte, req Request) []byte {
	w := wireRequest{Type: typeRequest}
	if req.MTU != 0 {
		w.MTU = newJSONInt(req.MTU)
	}
	body, _ := json.Marshal(w) // cannot fail: fixed types
	return appendFrame(b, body)
}

// ParseRequest parses one complete request frame.
func ParseRequest(frame []byte) (Request, error) {
	body, err := parseFrame(frame)
	if err != nil {
		return Request{}, err
	}
	var w wireRequest
	if err := decodeJSON(body, &w); err != nil {
		return Request{}, err
	}
	if w.Type != typeRequest {
		return Request{}, fmt.Errorf("%w: type %q, want %q", ErrHandshake, w.Type, typeRequest)
	}
	mtu, err := intField(w.MTU, "mtu", 0, 1, maxMTU)
	if err != nil {
		return Request{}, err
	}
	return Request{MTU: int(mtu)}, nil
}

// AppendResponse appends the response frame for p. It fails if p is not a
// valid response (an IPv6 address missing, an MTU out of range, no RSD port).
func AppendResponse(b []byte, p Params) ([]byte, error) {
	if err := p.validate(); err != nil {
		return b, err
	}
	mask := p.Netmask()
	body, err := json.Marshal(wireResponse{
		ClientParameters: &wireClientParams{Address: p.ClientAddress.String(), MTU: newJSONInt(p.MTU), Netmask: &mask},
		ServerAddress:    p.ServerAddress.String(),
		ServerRSDPort:    newJSONInt(int(p.ServerRSDPort)),
		Type:             typeResponse,
	})
	if err != nil {
		return b, fmt.Errorf("tunnel: encode response: %w", err)
	}
	return appendFrame(b, body), nil
}

// ParseResponse parses one complete response frame. Absent
// clientParameters.mtu means 1500 and absent netmask /64 (tunnel.md §2.3);
// an absent or zero serverRSDPort is an error.
func ParseResponse(frame []byte) (Params, error) {
	body, err := parseFrame(frame)
	if err != nil {
		return Params{}, err
	}
	var w wireResponse
	if err := decodeJSON(body, &w); err != nil {
		return Params{}, err
	}
	if w.Type != typeResponse {
		return Params{}, fmt.Errorf("%w: type %q, want %q", ErrHandshake, w.Type, typeResponse)
	}
	if w.ClientParameters == nil {
		return Params{}, fmt.Errorf("%w: no clientParameters", ErrHandshake)
	}
	var p Params
	if p.ClientAddress, err = parseIPv6(w.ClientParameters.Address, "clientParameters.address"); err != nil {
		return Params{}, err
	}
	if p.ServerAddress, err = parseIPv6(w.ServerAddress, "serverAddress"); err != nil {
		return Params{}, err
	}
	mtu, err := intField(w.ClientParameters.MTU, "clientParameters.mtu", defaultResponseMTU, MinMTU, maxMTU)
	if err != nil {
		return Params{}, err
	}
	p.MTU = int(mtu)
	port, err := intField(w.ServerRSDPort, "serverRSDPort", 0, 0, math.MaxUint16)
	if err != nil {
		return Params{}, err
	}
	p.ServerRSDPort = uint16(port)
	p.PrefixLen = defaultPrefixLen
	if w.ClientParameters.Netmask != nil {
		if p.PrefixLen, err = maskLen(*w.ClientParameters.Netmask); err != nil {
			return Params{}, err
		}
	}
	if err := p.validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

func parseIPv6(s, name string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: %s %q is not an IPv6 address", ErrHandshake, name, s)
	}
	return a, nil
}

// maskLen converts an IPv6 mask in text form to a prefix length; the mask
// must be contiguous ones then zeros.
func maskLen(s string) (int, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return 0, fmt.Errorf("%w: netmask %q is not an IPv6 mask", ErrHandshake, s)
	}
	m := a.As16()
	n := 0
	for n < 128 && m[n/8]&(0x80>>(n%8)) != 0 {
		n++
	}
	for i := n; i < 128; i++ {
		if m[i/8]&(0x80>>(i%8)) != 0 {
			return 0, fmt.Errorf("%w: netmask %q is not contiguous", ErrHandshake, s)
		}
	}
	return n, nil
}

// bindContext makes ctx bound the blocking I/O on rw until the returned
// stop is called: through deadlines when rw has them, else by closing rw when
// ctx ends. stop clears the deadline and turns an I/O error caused by ctx
// into ctx's error.
func bindContext(ctx context.Context, rw any) (stop func(error) error) {
	ctxErr := func(err error) error {
		if err == nil {
			return nil
		}
		if cerr := context.Cause(ctx); cerr != nil {
			return fmt.Errorf("tunnel: CDTunnel handshake: %w", cerr)
		}
		// The deadline set on rw can fire a moment before ctx's own timer.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return fmt.Errorf("tunnel: CDTunnel handshake: %w", context.DeadlineExceeded)
		}
		return err
	}
	type deadliner interface{ SetDeadline(time.Time) error }
	if d, ok := rw.(deadliner); ok {
		if dl, ok := ctx.Deadline(); ok {
			_ = d.SetDeadline(dl)
		}
		cancelStop := deadline.Interrupt(ctx, d.SetDeadline)
		return func(err error) error {
			cancelStop()
			_ = d.SetDeadline(time.Time{})
			return ctxErr(err)
		}
	}
	if c, ok := rw.(io.Closer); ok {
		cancelStop := context.AfterFunc(ctx, func() { _ = c.Close() })
		return func(err error) error {
			cancelStop()
			return ctxErr(err)
		}
	}
	return ctxErr
}

// ClientHandshake runs the host role on rw: it writes the request for mtu
// (StreamMTU on byte streams) in one Write, then reads exactly the response
// frame, so IPv6 data that follows stays unread in rw. ctx bounds the
// exchange (through rw's deadlines when it has them, otherwise by closing rw
// if ctx ends first) and is not kept.
func ClientHandshake(ctx context.Context, rw io.ReadWriter, mtu int) (Params, error) {
	stop := bindContext(ctx, rw)
	p, err := clientHandshake(rw, mtu)
	if err = stop(err); err != nil {
		return Params{}, err
	}
	return p, nil
}

func clientHandshake(rw io.ReadWriter, mtu int) (Params, error) {
	if _, err := rw.Write(AppendRequest(nil, Request{MTU: mtu})); err != nil {
		return Params{}, fmt.Errorf("tunnel: write CDTunnel request: %w", err)
	}
	frame, err := readFrame(rw)
	if err != nil {
		return Params{}, err
	}
	return ParseResponse(frame)
}

// ServerHandshake runs the device role on rw: it reads exactly one request
// frame, asks answer for the parameters, and writes the response in one Write
// (one TLS record, < 256 bytes so that go-ios can read it, tunnel.md §2.6).
// Nothing is written before the response. ctx bounds the exchange as in
// ClientHandshake.
func ServerHandshake(ctx context.Context, rw io.ReadWriter, answer func(Request) (Params, error)) (Request, Params, error) {
	stop := bindContext(ctx, rw)
	req, p, err := serverHandshake(rw, answer)
	if err = stop(err); err != nil {
		return Request{}, Params{}, err
	}
	return req, p, nil
}

func serverHandshake(rw io.ReadWriter, answer func(Request) (Params, error)) (Request, Params, error) {
	frame, err := readFrame(rw)
	if err != nil {
		return Request{}, Params{}, err
	}
	req, err := ParseRequest(frame)
	if err != nil {
		return Request{}, Params{}, err
	}
	p, err := answer(req)
	if err != nil {
		return Request{}, Params{}, err
	}
	resp, err := AppendResponse(nil, p)
	if err != nil {
		return Request{}, Params{}, err
	}
	if _, err := rw.Write(resp); err != nil {
		return Request{}, Params{}, fmt.Errorf("tunnel: write CDTunnel response: %w", err)
	}
	return req, p, nil
}
