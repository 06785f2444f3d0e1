package usbmux

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
)

// DefaultTimeout bounds one request (dial, send, reply) when the caller's
// context carries no earlier deadline.
const DefaultTimeout = 10 * time.Second

// ClientConfig configures a Client. The zero value talks to DefaultAddr.
type ClientConfig struct {
	// Addr is usbmuxd's socket; the zero value means DefaultAddr().
	Addr Addr
	// Dial opens a stream to Addr. nil uses a net.Dialer; tests pass an
	// in-memory dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Timeout bounds each request and each event's payload once its header
	// has arrived; 0 means DefaultTimeout.
	Timeout time.Duration
	// ProgName and ClientVersion fill the ProgName and ClientVersionString
	// keys of every request; empty means "iosmux".
	ProgName, ClientVersion string
}

// Client is the host side of the usbmuxd protocol. Every call opens its own
// socket, as libusbmuxd does: usbmuxd turns a socket into a byte pipe after
// Connect and into an event stream after Listen, so sharing one would only
// serialise callers. A Client is safe for concurrent use.
type Client struct {
	cfg ClientConfig
	tag atomic.Uint32
}

// NewClient returns a client for cfg.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Addr == (Addr{}) {
		cfg.Addr = DefaultAddr()
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ProgName == "" {
		cfg.ProgName = "iosmux"
	}
	if cfg.ClientVersion == "" {
		cfg.ClientVersion = "iosmux"
	}
	return &Client{cfg: cfg}
}

// Addr returns the usbmuxd address the client talks to.
func (c *Client) Addr() Addr { return c.cfg.Addr }

func (c *Client) newRequest(messageType string) *request {
	return &request{
		MessageType:         messageType,
		ClientVersionString: c.cfg.ClientVersion,
		ProgName:            c.cfg.ProgName,
		LibUSBMuxVersion:    3,
	}
}

// dial opens a socket to usbmuxd, bounded by ctx and the request timeout.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := c.cfg.Dial(ctx, c.cfg.Addr.Net, c.cfg.Addr.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s (%w): install and start usbmuxd (Debian/Ubuntu: apt install usbmuxd; it starts when an iPhone is plugged in), give its address with --usbmux-address or USBMUXD_SOCKET_ADDRESS, or try a simulated iPhone with 'iosmux sim'", ErrNotRunning, c.cfg.Addr, err)
		}
		return nil, fmt.Errorf("usbmux: connect to usbmuxd at %s: %w", c.cfg.Addr, err)
	}
	return conn, nil
}

// roundTrip sends req on conn and reads the reply that carries its tag.
// The deadline is the earlier of ctx's and the request timeout; cancelling
// ctx interrupts the read. The deadline is left set; callers that keep the
// socket clear it.
func (c *Client) roundTrip(ctx context.Context, conn net.Conn, req *request) (*reply, error) {
	if err := conn.SetDeadline(deadline.Earliest(ctx, c.cfg.Timeout)); err != nil {
		return nil, fmt.Errorf("usbmux: %s: %w", req.MessageType, err)
	}
	stop := deadline.Interrupt(ctx, conn.SetDeadline)
	rep, err := c.exchange(ctx, conn, req)
	// stop reports false once the deadline-poisoning func has run or is
	// about to: the socket is then unusable whatever the exchange returned.
	if !stop() && err == nil {
		err = fmt.Errorf("usbmux: %s: %w", req.MessageType, context.Cause(ctx))
	}
	return rep, err
}

func (c *Client) exchange(ctx context.Context, conn net.Conn, req *request) (*reply, error) {
	tag := c.tag.Add(1)
	if err := writePacket(conn, tag, req); err != nil {
		return nil, c.ioError(ctx, req.MessageType, "send request", err)
	}
	h, payload, err := readPacket(conn, MaxMessageLen)
	if err != nil {
		return nil, c.ioError(ctx, req.MessageType, "read reply", err)
	}
	if err := checkPlistHeader(h); err != nil {
		return nil, fmt.Errorf("usbmux: %s reply: %w", req.MessageType, err)
	}
	if h.Tag != tag {
		return nil, fmt.Errorf("%w: %s reply carries tag %d, want %d", ErrMalformed, req.MessageType, h.Tag, tag)
	}
	rep, err := parseReply(payload)
	if err != nil {
		return nil, fmt.Errorf("usbmux: %s reply: %w", req.MessageType, err)
	}
	return rep, nil
}

func (c *Client) ioError(ctx context.Context, request, step string, err error) error {
	return fmt.Errorf("usbmux: %s: %s: %w", request, step, contextError(ctx, err))
}

// contextError prefers ctx's reason to the I/O error it caused: a
// cancelled context poisons the deadline, and a context deadline is also
// the socket's, which may fire a moment before ctx notices.
func contextError(ctx context.Context, err error) error {
	if cerr := context.Cause(ctx); cerr != nil {
		return cerr
	}
	if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return err
}

// do runs one request on a fresh socket.
func (c *Client) do(ctx context.Context, req *request) (*reply, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return c.roundTrip(ctx, conn, req)
}

// expectOK turns a reply that should be Result 0 into nil or an error.
func expectOK(rep *reply, request string) error {
	code, ok := rep.result()
	if !ok {
		return fmt.Errorf("%w: %s: want a Result reply, got MessageType %q", ErrMalformed, request, rep.MessageType)
	}
	if code != ResultOK {
		return &ResultError{Request: request, Code: code}
	}
	return nil
}

// ListDevices returns the devices usbmuxd knows, in its order. The same
// UDID may appear twice, once per connection type.
func (c *Client) ListDevices(ctx context.Context) ([]DeviceEntry, error) {
	rep, err := c.do(ctx, c.newRequest("ListDevices"))
	if err != nil {
		return nil, err
	}
	if code, ok := rep.result(); ok {
		return nil, &ResultError{Request: "ListDevices", Code: code}
	}
	devs, err := rep.devices()
	if err != nil {
		return nil, fmt.Errorf("usbmux: ListDevices reply: %w", err)
	}
	return devs, nil
}

// ReadBUID returns the host's system BUID, the SystemBUID of pair records.
func (c *Client) ReadBUID(ctx context.Context) (string, error) {
	rep, err := c.do(ctx, c.newRequest("ReadBUID"))
	if err != nil {
		return "", err
	}
	if code, ok := rep.result(); ok {
		return "", &ResultError{Request: "ReadBUID", Code: code}
	}
	if rep.BUID == "" {
		return "", fmt.Errorf("%w: ReadBUID reply without BUID", ErrMalformed)
	}
	return rep.BUID, nil
}

// ReadPairRecord returns the stored pair record for udid: a serialised
// plist (XML or binary) that the lockdown package parses. A missing record
// is ErrNoPairRecord.
func (c *Client) ReadPairRecord(ctx context.Context, udid string) ([]byte, error) {
	req := c.newRequest("ReadPairRecord")
	req.PairRecordID = udid
	rep, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	if code, ok := rep.result(); ok {
		rerr := &ResultError{Request: "ReadPairRecord", Code: code}
		if code == ResultBadDevice {
			return nil, fmt.Errorf("%w for %s: %w", ErrNoPairRecord, udid, rerr)
		}
		return nil, fmt.Errorf("usbmux: read pair record for %s: %w", udid, rerr)
	}
	if len(rep.PairRecordData) == 0 {
		return nil, fmt.Errorf("%w: ReadPairRecord reply for %s without PairRecordData", ErrMalformed, udid)
	}
	return rep.PairRecordData, nil
}

// SavePairRecord stores record for udid. A non-zero deviceID names the
// attached device the record belongs to; usbmuxd then tells listeners it is
// Paired.
func (c *Client) SavePairRecord(ctx context.Context, udid string, deviceID uint32, record []byte) error {
	if len(record) == 0 {
		return errors.New("usbmux: SavePairRecord: empty record")
	}
	req := c.newRequest("SavePairRecord")
	req.PairRecordID = udid
	req.PairRecordData = record
	req.DeviceID = deviceID
	rep, err := c.do(ctx, req)
	if err != nil {
		return err
	}
	return expectOK(rep, "SavePairRecord")
}

// DeletePairRecord removes the stored record for udid.
func (c *Client) DeletePairRecord(ctx context.Context, udid string) error {
	req := c.newRequest("DeletePairRecord")
	req.PairRecordID = udid
	rep, err := c.do(ctx, req)
	if err != nil {
		return err
	}
	return expectOK(rep, "DeletePairRecord")
}

// Connect opens a byte stream to TCP port on the device (the port in host
// order; the byte swap usbmuxd wants happens here). On success the
// returned conn carries the device's bytes and nothing else, with no
// deadline set; ErrConnRefused means nothing listens on the port and
// ErrBadDevice that the device is gone.
func (c *Client) Connect(ctx context.Context, deviceID uint32, port uint16) (net.Conn, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	req := c.newRequest("Connect")
	req.DeviceID = deviceID
	req.PortNumber = SwapPort(port)
	rep, err := c.roundTrip(ctx, conn, req)
	if err == nil {
		err = expectOK(rep, "Connect")
	}
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("usbmux: connect to device %d port %d: %w", deviceID, port, err)
	}
	return conn, nil
}
