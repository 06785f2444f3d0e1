package coredevice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/xpc"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Open opens a new RemoteXPC connection to the service, set up and
	// ready for requests. Required.
	Open func(ctx context.Context) (*xpc.Conn, error)
	// Service is the service's RSD name and UDID the device's, for
	// messages.
	Service string
	UDID    string
	// Features is the Features list of the service's RSD entry. A
	// non-empty list gates invocations: a feature it lacks is refused
	// before anything is sent. Empty means no gate.
	Features []string
	// OneShot opens a fresh connection for every invocation and closes
	// it after the reply (appium's way). By default one connection is
	// kept and reused (pymobiledevice3's, go-ios's and idevice's).
	OneShot bool
	// Version and DDIProtocolVersion are sent in every request; zero
	// values mean DefaultVersion and DefaultDDIProtocolVersion.
	Version            *Version
	DDIProtocolVersion int64
	// Rand is the source of invocation and device UUIDs; nil is
	// crypto/rand.
	Rand io.Reader
	// Logger receives debug logs; nil discards.
	Logger *slog.Logger
}

// Client invokes features of one CoreDevice service. Safe for concurrent
// use: invocations on the kept connection share it (each waits for the
// reply with its own message id).
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	mu   sync.Mutex
	conn *xpc.Conn // the kept connection (not OneShot)
}

// NewClient returns a client; it opens nothing until the first Invoke.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Version == nil {
		v := DefaultVersion
		cfg.Version = &v
		if cfg.DDIProtocolVersion == 0 {
			cfg.DDIProtocolVersion = DefaultDDIProtocolVersion
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: log}
}

// XPCOpener opens RemoteXPC services listed in an RSD Handshake;
// *reach.RSD implements it.
type XPCOpener interface {
	OpenXPC(ctx context.Context, s reach.Names, cfg *xpc.Config) (*xpc.Conn, error)
	Lookup(s reach.Names) (rsd.Service, error)
	UDID() string
}

var _ XPCOpener = (*reach.RSD)(nil)

// Options are the optional settings of Dial.
type Options struct {
	OneShot bool
	Logger  *slog.Logger
}

// Dial returns a client of s through o. It fails at once when o's
// Handshake does not list s (a developer-disk-image service before the
// mount, reach.ErrNotListed); the entry's Features become the gate.
func Dial(o XPCOpener, s reach.Names, opts *Options) (*Client, error) {
	e, err := o.Lookup(s)
	if err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &Options{}
	}
	return NewClient(ClientConfig{
		Open: func(ctx context.Context) (*xpc.Conn, error) {
			return o.OpenXPC(ctx, s, &xpc.Config{Logger: opts.Logger})
		},
		Service:  s.RSD,
		UDID:     o.UDID(),
		Features: e.Features(),
		OneShot:  opts.OneShot,
		Logger:   opts.Logger,
	}), nil
}

// Supports reports whether the gate lets feature through.
func (c *Client) Supports(feature string) bool {
	return len(c.cfg.Features) == 0 || slices.Contains(c.cfg.Features, Feature(feature))
}

// UDID is the device's UDID as configured.
func (c *Client) UDID() string { return c.cfg.UDID }

// NewRequest builds the envelope for feature with input (nil = {}), with
// fresh invocation and device UUIDs.
func (c *Client) NewRequest(feature string, input *xpc.Dict) (*Request, error) {
	inv, err := xpc.NewRandomUUID(c.cfg.Rand)
	if err != nil {
		return nil, err
	}
	dev, err := xpc.NewRandomUUID(c.cfg.Rand)
	if err != nil {
		return nil, err
	}
	return &Request{Feature: Feature(feature), Input: input, InvocationID: inv.String(), DeviceID: dev.String(),
		DDIProtocolVersion: c.cfg.DDIProtocolVersion, Version: *c.cfg.Version}, nil
}

// Invoke calls feature (short name or full identifier) with input and
// returns CoreDevice.output. A device refusal is *Error; a feature the
// service does not list is *FeatureError, and nothing is sent.
func (c *Client) Invoke(ctx context.Context, feature string, input *xpc.Dict) (xpc.Value, error) {
	if !c.Supports(feature) {
		return nil, &FeatureError{UDID: c.cfg.UDID, Service: c.cfg.Service, Feature: Feature(feature), Listed: c.cfg.Features}
	}
	req, err := c.NewRequest(feature, input)
	if err != nil {
		return nil, err
	}
	conn, release, err := c.connection(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	c.log.Debug("coredevice: invoke", "udid", c.cfg.UDID, "service", c.cfg.Service, "feature", feature, "invocation", req.InvocationID)
	m, err := conn.Request(ctx, req.Body())
	if err != nil {
		return nil, fmt.Errorf("coredevice: %s: %s %s: %w", c.cfg.UDID, c.cfg.Service, FeatureName(req.Feature), err)
	}
	out, err := ParseReply(m.Body)
	var de *Error
	var re *ReplyError
	switch {
	case errors.As(err, &de):
		de.Feature, de.UDID = req.Feature, c.cfg.UDID
	case errors.As(err, &re):
		re.Feature = req.Feature
	}
	return out, err
}

// connection returns the connection to use and what to do after the call.
func (c *Client) connection(ctx context.Context) (*xpc.Conn, func(), error) {
	if c.cfg.OneShot {
		conn, err := c.open(ctx)
		if err != nil {
			return nil, nil, err
		}
		return conn, func() { conn.Close() }, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		select {
		case <-c.conn.Done():
			// The device hung up since the last call (some close after
			// every reply): open a new one. A call already sent on a
			// connection that then fails is not repeated.
			c.conn = nil
		default:
		}
	}
	if c.conn == nil {
		conn, err := c.open(ctx)
		if err != nil {
			return nil, nil, err
		}
		c.conn = conn
	}
	return c.conn, func() {}, nil
}

func (c *Client) open(ctx context.Context) (*xpc.Conn, error) {
	if c.cfg.Open == nil {
		return nil, errors.New("coredevice: client has no way to open the service")
	}
	conn, err := c.cfg.Open(ctx)
	if err != nil {
		if errors.Is(err, reach.ErrNotListed) {
			return nil, err
		}
		return nil, fmt.Errorf("coredevice: %s: open %s: %w", c.cfg.UDID, c.cfg.Service, err)
	}
	return conn, nil
}

// Close closes the kept connection, if any.
func (c *Client) Close() error {
	c.mu.Lock()
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn != nil {
		return conn.Close()
	}
	return nil
}
