package rsd

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/iosmux/iosmux/xpc"
)

// ClientConfig configures NewClient.
type ClientConfig struct {
	// HostUUID is this host's stable RSD identity (LoadOrCreateHostUUID).
	// When set, the client announces itself with a host Handshake right after
	// set-up, as pmd3 and idevice do; when zero it sends none, as go-ios and
	// appium do.
	HostUUID xpc.UUID
	// XPC configures the RemoteXPC connection; nil means defaults.
	XPC *xpc.Config
}

// Client is an RSD connection whose device Handshake has been read. The
// connection stays open (a device keeps one RSD peer per tunnel) until Close.
type Client struct {
	conn      *xpc.Conn
	Handshake *Handshake
}

// NewClient runs the host side of RSD on nc: RemoteXPC set-up, the optional
// host Handshake, then it waits for the device Handshake, skipping set-up
// mirrors and empty messages (rsd.md §2.5). ctx bounds all of it. On error nc
// is closed.
func NewClient(ctx context.Context, nc net.Conn, cfg *ClientConfig) (*Client, error) {
	if cfg == nil {
		cfg = &ClientConfig{}
	}
	conn, err := xpc.Client(ctx, nc, cfg.XPC)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("rsd: %w", err)
	}
	fail := func(step string, err error) (*Client, error) {
		conn.Close()
		return nil, fmt.Errorf("rsd: %s: %s: %w", conn.Name(), step, err)
	}
	if !cfg.HostUUID.IsZero() {
		m := &xpc.Message{Flags: xpc.FlagsMsg, ID: HostMessageID, Body: HostHandshake(cfg.HostUUID)}
		if err := conn.Send(ctx, xpc.RootChannel, m); err != nil {
			return fail("sending host Handshake", err)
		}
	}
	for {
		m, ch, err := conn.Receive(ctx)
		if err != nil {
			return fail("waiting for the device Handshake", err)
		}
		if ch != xpc.RootChannel || m.Body.Len() == 0 {
			continue
		}
		h, err := ParseHandshake(m.Body)
		if errors.Is(err, ErrNotHandshake) {
			continue
		}
		if err != nil {
			return fail("reading the device Handshake", err)
		}
		return &Client{conn: conn, Handshake: h}, nil
	}
}

// Conn returns the underlying RemoteXPC connection.
func (c *Client) Conn() *xpc.Conn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
