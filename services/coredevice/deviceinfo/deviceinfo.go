// Package deviceinfo speaks com.apple.coredevice.deviceinfo, the
// CoreDevice service that describes the device and its displays
// (docs/protocols/coredevice.md §5), in both roles.
package deviceinfo

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/iosmux/iosmux/services/coredevice"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/xpc"
)

// Feature names, in the order a device lists them (coredevice.md §5).
const (
	FeatureDisplayInfo = "getdisplayinfo"
	FeatureDeviceInfo  = "getdeviceinfo"
	FeatureGestalt     = "querymobilegestalt"
	FeatureLockState   = "getlockstate"
)

// Display is one display of getdisplayinfo.
type Display struct {
	ID      int64  `json:"displayId"`
	Name    string `json:"name"`
	Primary bool   `json:"primary"`
	// Width and Height are nativeSize, in pixels.
	Width  float64 `json:"width"`
	Height float64 `json:"height"`
}

// value encodes the display; nativeSize as two doubles (a CGSize; the
// wire type is the simulator's choice, coredevice.md §6).
func (d Display) value() *xpc.Dict {
	return xpc.NewDict("displayId", xpc.Int64(d.ID), "name", xpc.String(d.Name),
		"nativeSize", xpc.Array{xpc.Double(d.Width), xpc.Double(d.Height)}, "primary", xpc.Bool(d.Primary))
}

func number(v xpc.Value) (float64, bool) {
	switch n := v.(type) {
	case xpc.Double:
		return float64(n), true
	case xpc.Int64:
		return float64(n), true
	case xpc.Uint64:
		return float64(n), true
	}
	return 0, false
}

func parseDisplay(v xpc.Value) (Display, error) {
	d, ok := v.(*xpc.Dict)
	if !ok {
		return Display{}, fmt.Errorf("a display is %T, not a dictionary", v)
	}
	out := Display{Name: d.String("name"), Primary: d.Bool("primary")}
	out.ID, _ = d.Integer("displayId")
	if sz := d.Array("nativeSize"); len(sz) == 2 {
		out.Width, _ = number(sz[0])
		out.Height, _ = number(sz[1])
	}
	return out, nil
}

// Client is the host role.
type Client struct {
	c *coredevice.Client
}

// New wraps a CoreDevice client of the deviceinfo service.
func New(c *coredevice.Client) *Client { return &Client{c: c} }

// Dial opens the device's deviceinfo service through o (its RSD).
func Dial(o coredevice.XPCOpener, opts *coredevice.Options) (*Client, error) {
	c, err := coredevice.Dial(o, reach.DeviceInfo, opts)
	if err != nil {
		return nil, err
	}
	return New(c), nil
}

// Close closes the connection the client keeps.
func (c *Client) Close() error { return c.c.Close() }

func (c *Client) dict(ctx context.Context, feature string, in *xpc.Dict) (*xpc.Dict, error) {
	out, err := c.c.Invoke(ctx, feature, in)
	if err != nil {
		return nil, err
	}
	d, ok := out.(*xpc.Dict)
	if !ok {
		return nil, &coredevice.ReplyError{Feature: coredevice.Feature(feature), Msg: fmt.Sprintf("output is %T, not a dictionary", out)}
	}
	return d, nil
}

// DeviceInfo returns getdeviceinfo's dictionary as the device sends it
// (its keys are unconfirmed, coredevice.md §5).
func (c *Client) DeviceInfo(ctx context.Context) (*xpc.Dict, error) {
	return c.dict(ctx, FeatureDeviceInfo, nil)
}

// Displays returns getdisplayinfo's displays.
func (c *Client) Displays(ctx context.Context) ([]Display, error) {
	d, err := c.dict(ctx, FeatureDisplayInfo, nil)
	if err != nil {
		return nil, err
	}
	var out []Display
	for _, v := range d.Array("displays") {
		dp, err := parseDisplay(v)
		if err != nil {
			return nil, &coredevice.ReplyError{Feature: coredevice.Feature(FeatureDisplayInfo), Msg: err.Error()}
		}
		out = append(out, dp)
	}
	return out, nil
}

// LockState returns getlockstate's dictionary; many devices answer
// coredevice.ErrNotImplemented.
func (c *Client) LockState(ctx context.Context) (*xpc.Dict, error) {
	return c.dict(ctx, FeatureLockState, nil)
}

// MobileGestalt asks for MobileGestalt keys; most devices answer
// coredevice.ErrNotPermitted.
func (c *Client) MobileGestalt(ctx context.Context, keys ...string) (*xpc.Dict, error) {
	arr := xpc.Array{}
	for _, k := range keys {
		arr = append(arr, xpc.String(k))
	}
	return c.dict(ctx, FeatureGestalt, xpc.NewDict("keys", arr))
}

// Device is what the device role reports.
type Device interface {
	// DeviceInfo is getdeviceinfo's output.
	DeviceInfo() *xpc.Dict
	// Displays are getdisplayinfo's displays.
	Displays() []Display
}

// NewServer is the device role. getlockstate answers ActionError 2 and
// querymobilegestalt ActionError 5, as many devices do (coredevice.md §5).
func NewServer(dev Device, logger *slog.Logger) *coredevice.Server {
	s := &coredevice.Server{Name: reach.DeviceInfo.RSD, Logger: logger}
	s.Handle(FeatureDisplayInfo, func(context.Context, *coredevice.Request) (xpc.Value, error) {
		arr := xpc.Array{}
		for _, d := range dev.Displays() {
			arr = append(arr, d.value())
		}
		return xpc.NewDict("displays", arr), nil
	})
	s.Handle(FeatureDeviceInfo, func(context.Context, *coredevice.Request) (xpc.Value, error) {
		return dev.DeviceInfo(), nil
	})
	s.Handle(FeatureGestalt, func(context.Context, *coredevice.Request) (xpc.Value, error) {
		return nil, coredevice.NotPermitted()
	})
	s.Handle(FeatureLockState, func(_ context.Context, r *coredevice.Request) (xpc.Value, error) {
		return nil, coredevice.NotImplemented(r.Feature)
	})
	return s
}
