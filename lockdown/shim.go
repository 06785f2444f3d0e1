package lockdown

import (
	"context"
	"fmt"
	"net"
)

// Lockdown over RSD (rsd.md §4.2): a service an RSD lists under a
// ".shim.remote" name speaks lockdown's framing (u32be-length plists)
// after one exchange, RSDCheckin, with no session and no TLS. ShimClient
// and ShimServer are its two roles; both hand back the connection as a
// PlistConn positioned at the service's first byte.

// DefaultMaxShimPlist bounds one framed plist a shim connection reads.
const DefaultMaxShimPlist = 16 << 20

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

// ShimClient performs the host side of RSDCheckin on nc for service (used
// in errors): it sends the request with label (and escrowBag when not nil)
// and consumes both device replies, so the next byte belongs to the
// service. For services with a protocol of their own (AFC) use the
// PlistConn's Conn.
func ShimClient(ctx context.Context, nc net.Conn, service, label string, escrowBag []byte) (*PlistConn, error) {
	c := NewPlistConn(nc, DefaultMaxShimPlist)
	req := CheckinRequest{Label: label, ProtocolVersion: "2", Request: "RSDCheckin", EscrowBag: escrowBag}
	if err := c.Send(ctx, req); err != nil {
		return nil, shimFail(nc, service, "sending RSDCheckin", err)
	}
	var first, second map[string]any
	if err := c.Receive(ctx, &first); err != nil {
		return nil, shimFail(nc, service, "reading the RSDCheckin reply", err)
	}
	if first["Request"] != "RSDCheckin" {
		return nil, shimFail(nc, service, "reading the RSDCheckin reply", fmt.Errorf("got Request %v, want RSDCheckin", first["Request"]))
	}
	if err := c.Receive(ctx, &second); err != nil {
		return nil, shimFail(nc, service, "reading the StartService reply", err)
	}
	if e, ok := second["Error"].(string); ok {
		d, _ := second["ErrorDescription"].(string)
		return nil, &CheckinError{Service: service, Err: e, Description: d}
	}
	if second["Request"] != "StartService" {
		return nil, shimFail(nc, service, "reading the StartService reply", fmt.Errorf("got Request %v, want StartService", second["Request"]))
	}
	return c, nil
}

// ShimServer performs the device side: it reads the RSDCheckin request and
// answers with {"Request": "RSDCheckin"} then {"Request": "StartService"}
// (rsd.md §4.2), both in one write: appium's syslog text mode reads the
// stream raw once it has the first reply, so a second one arriving on its
// own would end up in the first log line it prints. The caller then speaks
// the service's protocol on the connection.
func ShimServer(ctx context.Context, nc net.Conn, service string) (*PlistConn, *CheckinRequest, error) {
	c := NewPlistConn(nc, DefaultMaxShimPlist)
	var req CheckinRequest
	if err := c.Receive(ctx, &req); err != nil {
		return nil, nil, shimFail(nc, service, "reading RSDCheckin", err)
	}
	if req.Request != "RSDCheckin" {
		return nil, nil, shimFail(nc, service, "reading RSDCheckin", fmt.Errorf("got Request %q", req.Request))
	}
	if err := c.SendAll(ctx, map[string]string{"Request": "RSDCheckin"}, map[string]string{"Request": "StartService"}); err != nil {
		return nil, nil, shimFail(nc, service, "sending the RSDCheckin and StartService replies", err)
	}
	return c, &req, nil
}

// RejectCheckin answers an RSDCheckin with a StartService error, as a
// device refusing the service does.
func RejectCheckin(ctx context.Context, nc net.Conn, service, errName, desc string) error {
	c := NewPlistConn(nc, DefaultMaxShimPlist)
	var req CheckinRequest
	if err := c.Receive(ctx, &req); err != nil {
		return shimFail(nc, service, "reading RSDCheckin", err)
	}
	if err := c.Send(ctx, map[string]string{"Request": "RSDCheckin"}); err != nil {
		return shimFail(nc, service, "sending RSDCheckin reply", err)
	}
	return c.Send(ctx, map[string]string{"Request": "StartService", "Error": errName, "ErrorDescription": desc})
}

// shimFail closes nc and names the service, its peer and the step.
func shimFail(nc net.Conn, service, step string, err error) error {
	nc.Close()
	return fmt.Errorf("rsd: %s (%s): %s: %w", service, nc.RemoteAddr(), step, err)
}
