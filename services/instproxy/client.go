package instproxy

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/reach"
)

// Client sends installation_proxy commands on one connection to the
// service, one command at a time (several may follow each other). Not
// for concurrent use.
type Client struct {
	pc *lockdown.PlistConn
	// ReplyTimeout bounds the wait for each reply of a command (an
	// install sends progress every few seconds); 0 means
	// DefaultReplyTimeout. The caller's context bounds the whole command.
	ReplyTimeout time.Duration
}

// DefaultReplyTimeout is Client.ReplyTimeout's default.
const DefaultReplyTimeout = 5 * time.Minute

// Browse bounds (go-ios's): a device that never says Complete, or claims
// absurd numbers of apps, is cut off.
const (
	maxBrowseReplies = 1000
	maxBrowseApps    = 1_000_000
	// maxReply bounds one reply frame: a Browse page of 20 full app
	// dictionaries is a few hundred kilobytes.
	maxReply = 16 << 20
)

// NewClient wraps a connection positioned at the service's first byte.
func NewClient(conn net.Conn) *Client {
	return &Client{pc: lockdown.NewPlistConn(conn, maxReply)}
}

// Open connects to installation_proxy through o.
func Open(ctx context.Context, o reach.Opener) (*Client, error) {
	conn, err := o.Open(ctx, reach.InstallationProxy)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.pc.Close() }

func (c *Client) send(ctx context.Context, req map[string]any) error {
	if err := c.pc.Send(ctx, req); err != nil {
		return fmt.Errorf("instproxy: %s: send: %w", req["Command"], err)
	}
	return nil
}

func (c *Client) receive(ctx context.Context, command string) (lockdown.Message, error) {
	to := c.ReplyTimeout
	if to <= 0 {
		to = DefaultReplyTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	m, err := c.pc.ReceiveMessage(rctx)
	if err != nil {
		return nil, fmt.Errorf("instproxy: %s: read reply: %w", command, err)
	}
	return m, nil
}

// ApplicationType values for BrowseOptions and LookupOptions.
const (
	TypeUser   = "User"
	TypeSystem = "System"
	TypeAny    = "Any"
)

// BrowseOptions selects the apps and attributes Browse returns.
type BrowseOptions struct {
	// Type is "User", "System" or "Any"; "" sends none (every app, as
	// go-ios asks for all).
	Type string
	// Attributes, if set, are the only keys returned per app.
	Attributes []string
	// BundleIDs, if set, limits the answer to these apps.
	BundleIDs []string
}

func (o BrowseOptions) clientOptions() map[string]any {
	opts := map[string]any{}
	if o.Type != "" {
		opts["ApplicationType"] = o.Type
	}
	if len(o.Attributes) > 0 {
		opts["ReturnAttributes"] = o.Attributes
	}
	if len(o.BundleIDs) > 0 {
		opts["BundleIDs"] = o.BundleIDs
	}
	return opts
}

// Browse lists installed apps. The device answers in pages; page, if
// set, is called with each as it arrives.
func (c *Client) Browse(ctx context.Context, opts BrowseOptions, page func([]App)) ([]App, error) {
	if err := c.send(ctx, map[string]any{"Command": "Browse", "ClientOptions": opts.clientOptions()}); err != nil {
		return nil, err
	}
	var out []App
	for range maxBrowseReplies {
		m, err := c.receive(ctx, "Browse")
		if err != nil {
			return nil, err
		}
		p, done, err := ParseProgress("Browse", m)
		if err != nil {
			return nil, err
		}
		// Entries may come in the final message too.
		if list, ok := m["CurrentList"].([]any); ok {
			pg := make([]App, 0, len(list))
			for _, e := range list {
				if d, ok := e.(map[string]any); ok {
					pg = append(pg, App(d))
				}
			}
			if len(out)+len(pg) > maxBrowseApps {
				return nil, fmt.Errorf("instproxy: Browse: the device lists more than %d apps", maxBrowseApps)
			}
			out = append(out, pg...)
			if page != nil && len(pg) > 0 {
				page(pg)
			}
		} else if p.Status != "BrowsingApplications" && !done {
			return nil, fmt.Errorf("%w: Browse reply with Status %q", errMalformed, p.Status)
		}
		if done {
			return out, nil
		}
	}
	return nil, fmt.Errorf("instproxy: Browse: no Complete after %d replies", maxBrowseReplies)
}

// LookupOptions selects what Lookup returns.
type LookupOptions struct {
	// Type is "User", "System" or "Any"; "" means "Any" (pmd3's default).
	Type       string
	Attributes []string
}

// Lookup returns the named apps that are installed, by bundle id (all
// apps when ids is empty).
func (c *Client) Lookup(ctx context.Context, ids []string, opts LookupOptions) (map[string]App, error) {
	co := map[string]any{"ApplicationType": opts.Type}
	if opts.Type == "" {
		co["ApplicationType"] = TypeAny
	}
	if len(ids) > 0 {
		co["BundleIDs"] = ids
	}
	if len(opts.Attributes) > 0 {
		co["ReturnAttributes"] = opts.Attributes
	}
	if err := c.send(ctx, map[string]any{"Command": "Lookup", "ClientOptions": co}); err != nil {
		return nil, err
	}
	m, err := c.receive(ctx, "Lookup")
	if err != nil {
		return nil, err
	}
	if _, ok := m["Error"]; ok {
		_, _, err := ParseProgress("Lookup", m)
		return nil, err
	}
	res, ok := m.Dict("LookupResult")
	if !ok {
		return nil, fmt.Errorf("%w: Lookup reply without LookupResult", errMalformed)
	}
	out := make(map[string]App, len(res))
	for id, v := range res {
		if d, ok := v.(map[string]any); ok {
			out[id] = App(d)
		}
	}
	// A device may send Status Complete with it or after it (UNCONFIRMED);
	// iosmux's device role sends it in the same message.
	return out, nil
}

// Package types of InstallOptions.
const (
	PackageDeveloper     = "Developer"
	PackageCustomer      = "Customer"
	PackageCarrierBundle = "CarrierBundle"
)

// InstallOptions are the ClientOptions of Install and Upgrade.
type InstallOptions struct {
	// PackageType: "Developer" (a .app folder, pmd3's --developer),
	// "Customer" or "CarrierBundle"; "" sends none.
	PackageType string
	// BundleID is sent as CFBundleIdentifier (idevice and
	// ideviceinstaller do for .ipa installs).
	BundleID string
	// Extra keys, as given.
	Extra map[string]any
}

func (o InstallOptions) clientOptions() map[string]any {
	m := map[string]any{}
	for k, v := range o.Extra {
		m[k] = v
	}
	if o.PackageType != "" {
		m["PackageType"] = o.PackageType
	}
	if o.BundleID != "" {
		m["CFBundleIdentifier"] = o.BundleID
	}
	return m
}

// Install installs the package at packagePath, a path inside the AFC
// root where it was staged (docs/protocols/instproxy.md §3). progress, if
// set, is told of each progress message.
func (c *Client) Install(ctx context.Context, packagePath string, opts InstallOptions, progress func(Progress)) error {
	return c.install(ctx, "Install", packagePath, opts, progress)
}

// Upgrade is Install for an app that may already be installed.
func (c *Client) Upgrade(ctx context.Context, packagePath string, opts InstallOptions, progress func(Progress)) error {
	return c.install(ctx, "Upgrade", packagePath, opts, progress)
}

func (c *Client) install(ctx context.Context, cmd, pkg string, opts InstallOptions, progress func(Progress)) error {
	return c.progressCommand(ctx, map[string]any{"Command": cmd, "PackagePath": pkg, "ClientOptions": opts.clientOptions()}, progress)
}

// Uninstall removes an app. Removing an app that is not installed
// succeeds on iosmux's simulator (SIM; what a device answers is
// UNCONFIRMED).
func (c *Client) Uninstall(ctx context.Context, bundleID string, progress func(Progress)) error {
	return c.progressCommand(ctx, map[string]any{"Command": "Uninstall", "ApplicationIdentifier": bundleID, "ClientOptions": map[string]any{}}, progress)
}

// progressCommand sends req and reads progress until Complete or an
// error.
func (c *Client) progressCommand(ctx context.Context, req map[string]any, progress func(Progress)) error {
	cmd, _ := req["Command"].(string)
	if err := c.send(ctx, req); err != nil {
		return err
	}
	for {
		m, err := c.receive(ctx, cmd)
		if err != nil {
			return err
		}
		p, done, err := ParseProgress(cmd, m)
		if err != nil {
			return err
		}
		if progress != nil {
			progress(p)
		}
		if done {
			return nil
		}
	}
}

// CheckCapabilitiesMatch asks whether the device has the capabilities
// (idevice requires a bool LookupResult).
func (c *Client) CheckCapabilitiesMatch(ctx context.Context, caps []string) (bool, error) {
	if err := c.send(ctx, map[string]any{"Command": "CheckCapabilitiesMatch", "Capabilities": caps, "ClientOptions": map[string]any{}}); err != nil {
		return false, err
	}
	m, err := c.receive(ctx, "CheckCapabilitiesMatch")
	if err != nil {
		return false, err
	}
	if _, ok := m["Error"]; ok {
		_, _, err := ParseProgress("CheckCapabilitiesMatch", m)
		return false, err
	}
	b, ok := m.Bool("LookupResult")
	if !ok {
		return false, fmt.Errorf("%w: CheckCapabilitiesMatch reply without a bool LookupResult", errMalformed)
	}
	return b, nil
}
