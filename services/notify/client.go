package notify

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/iosmux/iosmux/lockdown"
)

// ErrProxyDeath means the device ended the session: the answer to
// Shutdown, or unasked when it is going away (a reboot).
var ErrProxyDeath = errors.New("notify: the device ended the notification session (ProxyDeath)")

// Client speaks notification_proxy on one connection to the service,
// positioned at its first byte (services/reach opens it). Post and Observe
// may be called while another goroutine waits in Next; two Nexts may not
// run at once.
type Client struct {
	pc *lockdown.PlistConn
}

// NewClient wraps conn.
func NewClient(conn net.Conn) *Client {
	return &Client{pc: lockdown.NewPlistConn(conn, 64<<10)}
}

// Close closes the connection without Shutdown (as go-ios and pymobiledevice3
// mostly do).
func (c *Client) Close() error { return c.pc.Close() }

func (c *Client) send(ctx context.Context, m Message) error {
	if err := c.pc.Send(ctx, m.plist()); err != nil {
		return fmt.Errorf("notify: %s %s: %w", m.Command, m.Name, err)
	}
	return nil
}

// Post posts the Darwin notification name on the device. The device does
// not answer.
func (c *Client) Post(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("notify: post: empty notification name")
	}
	return c.send(ctx, Message{Command: CommandPost, Name: name})
}

// Observe asks the device to relay every later post of each name on this
// connection. The device does not answer.
func (c *Client) Observe(ctx context.Context, names ...string) error {
	for _, n := range names {
		if n == "" {
			return errors.New("notify: observe: empty notification name")
		}
		if err := c.send(ctx, Message{Command: CommandObserve, Name: n}); err != nil {
			return err
		}
	}
	return nil
}

// Next waits for the next relayed notification and returns its name. It
// returns ErrProxyDeath when the device ends the session, and skips
// commands it does not know (as go-ios does). ctx bounds the wait.
func (c *Client) Next(ctx context.Context) (string, error) {
	for {
		var m map[string]any
		if err := c.pc.Receive(ctx, &m); err != nil {
			return "", fmt.Errorf("notify: waiting for a notification: %w", err)
		}
		msg, err := messageFrom(m)
		if err != nil {
			return "", err
		}
		switch msg.Command {
		case CommandRelay:
			if msg.Name == "" {
				return "", fmt.Errorf("%w: RelayNotification without a Name", ErrMessage)
			}
			return msg.Name, nil
		case CommandDeath:
			return "", ErrProxyDeath
		}
	}
}

// Shutdown ends the session politely: it sends Shutdown and waits for the
// device's ProxyDeath (relays that arrive first are dropped), then closes.
func (c *Client) Shutdown(ctx context.Context) error {
	defer c.Close()
	if err := c.send(ctx, Message{Command: CommandShutdown}); err != nil {
		return err
	}
	for {
		_, err := c.Next(ctx)
		if errors.Is(err, ErrProxyDeath) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
