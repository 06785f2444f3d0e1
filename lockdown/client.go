package lockdown

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
)

// Port is lockdownd's TCP port on the device.
const Port = 62078

// TypeLockdown is QueryType's answer from a device in normal mode.
const TypeLockdown = "com.apple.mobile.lockdown"

// DefaultTimeout bounds one request/reply exchange or TLS handshake when
// the caller's context has no earlier deadline.
const DefaultTimeout = 30 * time.Second

// ClientConfig configures a Client.
type ClientConfig struct {
	// Label names the client in every request; empty means "iosmux".
	Label string
	// Timeout bounds each exchange and handshake; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Client is the host side of one lockdownd connection. Requests are
// serialised: a Client is safe for concurrent use, but one exchange runs at
// a time. After an I/O error the stream cannot resync, so every later call
// returns that first error.
type Client struct {
	cfg ClientConfig

	mu      sync.Mutex
	raw     net.Conn
	conn    net.Conn    // raw, or tlsConn while a session runs with TLS
	tlsConn *tls.Conn   // nil outside a TLS session
	session string      // SessionID of the running session
	err     error       // first I/O error
	once    sync.Once   // Close
	record  *PairRecord // record of the running session
}

// NewClient wraps a connection to lockdownd (a usbmuxd Connect to Port, or
// TCP to the device's Wi-Fi address).
func NewClient(conn net.Conn, cfg ClientConfig) *Client {
	if cfg.Label == "" {
		cfg.Label = "iosmux"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Client{cfg: cfg, raw: conn, conn: conn}
}

// Close closes the connection without StopSession (lockdownd ends the
// session with the connection). It is idempotent.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() { err = c.raw.Close() })
	return err
}

// deadline is the earlier of ctx's deadline and now+timeout.
func (c *Client) deadline(ctx context.Context) time.Time {
	return deadline.Earliest(ctx, c.cfg.Timeout)
}

// guard runs io with the connection's deadline set from ctx, interrupting
// it when ctx is cancelled; an I/O failure becomes the sticky error.
// c.mu is held.
func (c *Client) guard(ctx context.Context, what string, io func() error) error {
	if c.err != nil {
		return c.err
	}
	err := c.raw.SetDeadline(c.deadline(ctx)) // fails once the conn is closed
	if err == nil {
		stop := deadline.Interrupt(ctx, c.raw.SetDeadline)
		err = io()
		if !stop() && err == nil {
			err = context.Cause(ctx)
		}
	}
	if err != nil {
		c.err = fmt.Errorf("lockdown: %s: %w", what, contextError(ctx, err))
		return c.err
	}
	return nil
}

func contextError(ctx context.Context, err error) error {
	if cerr := context.Cause(ctx); cerr != nil {
		return cerr
	}
	if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("device closed the connection: %w", err)
	}
	return err
}

// Request sends one request dictionary (Label is added) and returns the
// reply. A reply with an Error (or Result "Failure") comes back as *Error;
// a reply that does not echo the request name is ErrMalformed. It is the
// building block of the typed calls and serves requests they do not cover.
func (c *Client) Request(ctx context.Context, req map[string]any) (Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.request(ctx, req)
}

func (c *Client) request(ctx context.Context, req map[string]any) (Message, error) {
	name, _ := req["Request"].(string)
	if name == "" {
		return nil, errors.New("lockdown: request without a Request name")
	}
	msg := make(map[string]any, len(req)+1)
	for k, v := range req {
		msg[k] = v
	}
	msg["Label"] = c.cfg.Label
	frame, err := encodeFrame(msg)
	if err != nil {
		return nil, err
	}
	var payload []byte
	err = c.guard(ctx, name, func() error {
		if _, err := c.conn.Write(frame); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		payload, err = readFrame(c.conn, MaxFrameLen)
		if err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep, err := ParseMessage(payload)
	if err != nil {
		return nil, fmt.Errorf("lockdown: %s reply: %w", name, err)
	}
	if code, ok := rep.String("Error"); ok {
		return rep, &Error{Request: name, Code: code}
	}
	if res, _ := rep.String("Result"); res == "Failure" {
		return rep, &Error{Request: name, Code: "Failure"}
	}
	if got, _ := rep.String("Request"); got != name {
		return rep, fmt.Errorf("%w: %s reply names request %q", ErrMalformed, name, got)
	}
	return rep, nil
}

// QueryType returns the lockdownd type: TypeLockdown in normal mode.
func (c *Client) QueryType(ctx context.Context) (string, error) {
	rep, err := c.Request(ctx, map[string]any{"Request": "QueryType"})
	if err != nil {
		return "", err
	}
	t, ok := rep.String("Type")
	if !ok {
		return "", fmt.Errorf("%w: QueryType reply without Type", ErrMalformed)
	}
	return t, nil
}

func valueRequest(name, domain, key string) map[string]any {
	req := map[string]any{"Request": name}
	if domain != "" {
		req["Domain"] = domain
	}
	if key != "" {
		req["Key"] = key
	}
	return req
}

// GetValue reads one value; an empty domain is the top-level domain and an
// empty key the whole domain (a map[string]any). Before a session a device
// answers only a reduced set of keys.
func (c *Client) GetValue(ctx context.Context, domain, key string) (any, error) {
	rep, err := c.Request(ctx, valueRequest("GetValue", domain, key))
	if err != nil {
		return nil, err
	}
	v, ok := rep["Value"]
	if !ok {
		return nil, &Error{Request: "GetValue", Code: CodeMissingValue}
	}
	return v, nil
}

// GetValues reads a whole domain as a dictionary.
func (c *Client) GetValues(ctx context.Context, domain string) (Message, error) {
	v, err := c.GetValue(ctx, domain, "")
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: GetValue of domain %q returned %T, want a dictionary", ErrMalformed, domain, v)
	}
	return m, nil
}

// SetValue writes one value (needs a session).
func (c *Client) SetValue(ctx context.Context, domain, key string, value any) error {
	req := valueRequest("SetValue", domain, key)
	req["Value"] = value
	_, err := c.Request(ctx, req)
	return err
}

// RemoveValue deletes one value (needs a session).
func (c *Client) RemoveValue(ctx context.Context, domain, key string) error {
	_, err := c.Request(ctx, valueRequest("RemoveValue", domain, key))
	return err
}

// Session describes a running session.
type Session struct {
	ID         string
	TLS        bool // EnableSessionSSL was set and the TLS handshake completed
	TLSVersion uint16
}

// StartSession opens a session with the host identity in rec and, when the
// device asks for it, upgrades the connection to TLS with the host
// certificate (lockdown.md §4). ErrInvalidHostID means the device does not know
// this pairing.
func (c *Client) StartSession(ctx context.Context, rec *PairRecord) (Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != "" {
		return Session{}, errors.New("lockdown: StartSession: a session is already running")
	}
	tlsCfg, err := clientTLSConfig(rec)
	if err != nil {
		return Session{}, err
	}
	// No ProtocolVersion: libimobiledevice and pmd3 send none, and go-ios's
	// "2" is not needed by any device the references handle.
	rep, err := c.request(ctx, map[string]any{
		"Request":    "StartSession",
		"HostID":     rec.HostID,
		"SystemBUID": rec.SystemBUID,
	})
	if err != nil {
		return Session{}, err
	}
	id, ok := rep.String("SessionID")
	if !ok || id == "" {
		return Session{}, fmt.Errorf("%w: StartSession reply without SessionID", ErrMalformed)
	}
	s := Session{ID: id}
	if ssl, _ := rep.Bool("EnableSessionSSL"); ssl {
		tc := tls.Client(c.raw, tlsCfg)
		err := c.guard(ctx, "StartSession: TLS handshake", func() error { return tc.HandshakeContext(ctx) })
		if err != nil {
			return Session{}, err
		}
		c.tlsConn, c.conn = tc, tc
		s.TLS, s.TLSVersion = true, tc.ConnectionState().Version
	}
	c.session, c.record = id, rec
	return s, nil
}

// StopSession ends the session. With TLS, both sides then close their TLS
// layer (close_notify each way, as libimobiledevice does) and the
// connection carries plaintext again.
func (c *Client) StopSession(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == "" {
		return errors.New("lockdown: StopSession: no session")
	}
	_, err := c.request(ctx, map[string]any{"Request": "StopSession", "SessionID": c.session})
	if err != nil {
		return err
	}
	c.session, c.record = "", nil
	if c.tlsConn == nil {
		return nil
	}
	tc := c.tlsConn
	c.tlsConn, c.conn = nil, c.raw
	return c.guard(ctx, "StopSession: TLS shutdown", func() error {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		// The device's close_notify ends the TLS stream; anything else
		// would be data we cannot place.
		var b [1]byte
		if n, err := tc.Read(b[:]); n > 0 || !errors.Is(err, io.EOF) {
			return fmt.Errorf("want the device's close_notify, got %d bytes, %v", n, err)
		}
		return nil
	})
}

// clientTLSConfig is the TLS client side of a session or service: the host
// certificate, no verification of the device (every reference skips it;
// the device certificate is one the host issued itself), no SNI. TLS 1.0
// stays allowed because devices before iOS 10 speak nothing newer
// (libimobiledevice caps them at TLS 1.0); newer devices negotiate 1.2/1.3.
// Dynamic record sizing is off so that one Write is one record: a
// CoreDeviceProxy tunnel writes one IPv6 packet per Write and the device
// reads one packet per record (tunnel.md §3.1); crypto/tls would otherwise
// split the first writes of a connection into small records.
func clientTLSConfig(rec *PairRecord) (*tls.Config, error) {
	cert, err := rec.HostTLSCertificate()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates:                []tls.Certificate{cert},
		InsecureSkipVerify:          true,
		MinVersion:                  tls.VersionTLS10,
		DynamicRecordSizingDisabled: true,
	}, nil
}
