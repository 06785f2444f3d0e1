package rsd

import (
	"context"
	"fmt"
	"net"

	"github.com/iosmux/iosmux/lockdown"
)

// DefaultMaxPlist bounds one framed plist read by a ShimConn.
const DefaultMaxPlist = 16 << 20

// CheckinRequest is the host's RSDCheckin (rsd.md §4.2).
type CheckinRequest struct {
	Label           string `plist:"Label"`
	ProtocolVersion string `plist:"ProtocolVersion"`
	Request         string `plist:"Request"`
	EscrowBag       []byte `plist:"EscrowBag,omitempty"`
}

// CheckinError is a device's refusal in its StartService reply.
type CheckinError struct {
	Service     string
	Err         string // Error, e.g. "EscrowFailure"
	Description string // ErrorDescription, if any
}

func (e *CheckinError) Error() string {
	s := fmt.Sprintf("rsd: %s: StartService failed: %s", e.Service, e.Err)
	if e.Description != "" {
		s += " (" + e.Description + ")"
	}
	return s
}

// ShimConn is a lockdown-over-RSD connection after RSDCheckin. Send and
// Receive exchange u32be-length-framed plists (lockdown's framing); for
// services with their own protocol (AFC, DTX) use Conn directly.
type ShimConn struct {
	nc      net.Conn
	name    string
	MaxSize int // bound for Receive; 0 means DefaultMaxPlist
}

// Conn returns the underlying connection, positioned after the checkin.
func (c *ShimConn) Conn() net.Conn { return c.nc }

// Close closes the connection.
func (c *ShimConn) Close() error { return c.nc.Close() }

// ShimClient performs the host side of RSDCheckin on nc for service (used in
// errors): it sends the request with label (and escrowBag when not nil) and
// consumes both device replies, so the next byte belongs to the service.
func ShimClient(ctx context.Context, nc net.Conn, service, label string, escrowBag []byte) (*ShimConn, error) {
	c := &ShimConn{nc: nc, name: service}
	req := CheckinRequest{Label: label, ProtocolVersion: "2", Request: "RSDCheckin", EscrowBag: escrowBag}
	if err := c.Send(ctx, req); err != nil {
		return nil, c.fail("sending RSDCheckin", err)
	}
	var first, second map[string]any
	if err := c.Receive(ctx, &first); err != nil {
		return nil, c.fail("reading the RSDCheckin reply", err)
	}
	if first["Request"] != "RSDCheckin" {
		return nil, c.fail("reading the RSDCheckin reply", fmt.Errorf("got Request %v, want RSDCheckin", first["Request"]))
	}
	if err := c.Receive(ctx, &second); err != nil {
		return nil, c.fail("reading the StartService reply", err)
	}
	if e, ok := second["Error"].(string); ok {
		d, _ := second["ErrorDescription"].(string)
		return nil, &CheckinError{Service: service, Err: e, Description: d}
	}
	if second["Request"] != "StartService" {
		return nil, c.fail("reading the StartService reply", fmt.Errorf("got Request %v, want StartService", second["Request"]))
	}
	return c, nil
}

// ShimServer performs the device side: it reads the RSDCheckin request and
// answers with {"Request": "RSDCheckin"} then {"Request": "StartService"}
// (rsd.md §4.2), both in one write: appium's syslog text mode reads the
// stream raw once it has the first reply, so a second one arriving on its
// own would end up in the first log line it prints. The caller then speaks
// the service's protocol on the conn.
func ShimServer(ctx context.Context, nc net.Conn, service string) (*ShimConn, *CheckinRequest, error) {
	c := &ShimConn{nc: nc, name: service}
	var req CheckinRequest
	if err := c.Receive(ctx, &req); err != nil {
		return nil, nil, c.fail("reading RSDCheckin", err)
	}
	if req.Request != "RSDCheckin" {
		return nil, nil, c.fail("reading RSDCheckin", fmt.Errorf("got Request %q", req.Request))
	}
	if err := c.plist().SendAll(ctx, map[string]string{"Request": "RSDCheckin"}, map[string]string{"Request": "StartService"}); err != nil {
		return nil, nil, c.fail("sending the RSDCheckin and StartService replies", err)
	}
	return c, &req, nil
}

// RejectCheckin answers an RSDCheckin with a StartService error, as a device
// refusing the service does.
func RejectCheckin(ctx context.Context, nc net.Conn, service, errName, desc string) error {
	c := &ShimConn{nc: nc, name: service}
	var req CheckinRequest
	if err := c.Receive(ctx, &req); err != nil {
		return c.fail("reading RSDCheckin", err)
	}
	if err := c.Send(ctx, map[string]string{"Request": "RSDCheckin"}); err != nil {
		return c.fail("sending RSDCheckin reply", err)
	}
	return c.Send(ctx, map[string]string{"Request": "StartService", "Error": errName, "ErrorDescription": desc})
}

func (c *ShimConn) fail(step string, err error) error {
	c.nc.Close()
	return fmt.Errorf("rsd: %s (%s): %s: %w", c.name, c.nc.RemoteAddr(), step, err)
}

// Send writes v as one XML plist (the references' format) with its u32be
// length, in a single Write (lockdown.PlistConn).
func (c *ShimConn) Send(ctx context.Context, v any) error {
	return c.plist().Send(ctx, v)
}

// Receive reads one framed plist (XML or binary) into v.
func (c *ShimConn) Receive(ctx context.Context, v any) error {
	return c.plist().Receive(ctx, v)
}

// PlistConn is the connection as a lockdown.PlistConn, for services that
// speak framed plists after the checkin.
func (c *ShimConn) PlistConn() *lockdown.PlistConn { return c.plist() }

func (c *ShimConn) plist() *lockdown.PlistConn {
	max := c.MaxSize
	if max <= 0 {
		max = DefaultMaxPlist
	}
	return lockdown.NewPlistConn(c.nc, max)
}
