package pairing

import (
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"sync"

	"github.com/iosmux/iosmux/xpc"
)

// The RemoteXPC transport (remotepairing.md §1.2, tunnel.md §5.2): the RSD service
// com.apple.internal.dt.coredevice.untrusted.tunnelservice. Each envelope is
// one message on stream 1 with flags ALWAYS_SET|DATA (0x101):
//
//	{"mangledTypeName": "RemotePairing.ControlChannelMessageEnvelope",
//	 "value": ENVELOPE}
//
// Inside, sequenceNumber is uint64, wireProtocolVersion int64, bytes are
// data: the tree's own types (tree.go). Dictionary keys are written in
// sorted order, which is the order pymobiledevice3 writes them
// (testdata/xpc_envelope.json), so the bytes match its encoder.

// TunnelServiceName is the RSD name of the pairing service.
const TunnelServiceName = "com.apple.internal.dt.coredevice.untrusted.tunnelservice"

const mangledTypeName = "RemotePairing.ControlChannelMessageEnvelope"

// envelopeFlags are pymobiledevice3's and go-ios's flags; idevice adds
// WANTS_REPLY, which is not needed (remotepairing.md §1.2, §11).
const envelopeFlags = xpc.FlagAlwaysSet | xpc.FlagData

// XPC is a Transport over a RemoteXPC connection, in either role.
type XPC struct {
	c         *xpc.Conn
	closeOnce sync.Once
	closeErr  error
}

// NewXPC carries envelopes over c, a connection set up by xpc.Client (host)
// or xpc.Server (device; ServeXPC does that). Close closes c.
func NewXPC(c *xpc.Conn) *XPC { return &XPC{c: c} }

// WriteEnvelope sends one envelope on stream 1.
func (t *XPC) WriteEnvelope(ctx context.Context, env map[string]any) error {
	v, err := toXPC(env)
	if err != nil {
		return err
	}
	m := envelopeMessage(v.(*xpc.Dict))
	return t.c.Send(ctx, xpc.RootChannel, &m)
}

func envelopeMessage(value *xpc.Dict) xpc.Message {
	return xpc.Message{Flags: envelopeFlags, Body: xpc.NewDict(
		"mangledTypeName", xpc.String(mangledTypeName),
		"value", value,
	)}
}

// ReadEnvelope returns the next envelope. Messages without a "value"
// dictionary are skipped: the device's {"ServiceVersion": N}, whose place is
// UNCONFIRMED (tunnel.md §5.2), and empty set-up leftovers. The
// mangledTypeName is not checked, as no reference checks it.
func (t *XPC) ReadEnvelope(ctx context.Context) (map[string]any, error) {
	for {
		m, _, err := t.c.Receive(ctx)
		if err != nil {
			return nil, err
		}
		v, ok := m.Body.Lookup("value")
		if !ok {
			continue
		}
		d, ok := v.(*xpc.Dict)
		if !ok {
			return nil, malformed("envelope value is %v, want a dictionary", v.Kind())
		}
		tr, err := fromXPC(d, 0)
		if err != nil {
			return nil, err
		}
		return tr.(tree), nil
	}
}

// Close closes the RemoteXPC connection.
func (t *XPC) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.c.Close() })
	return t.closeErr
}

var _ Transport = (*XPC)(nil)

// TunnelServiceVersion is the ServiceVersion the device's tunnel service
// announces: the value the sample RSD listing gives the service's
// Properties (rsd.md §5, tunnel.md §5.2); pymobiledevice3 only requires the
// key to exist.
const TunnelServiceVersion = 2

// ServeXPC runs the device role on an accepted connection to the tunnel
// service port: RemoteXPC set-up as the device, then Serve. It closes nc.
// Unless cfg sets its own HeaderReply, the set-up mirror carries
// {"ServiceVersion": 2}, which pymobiledevice3 requires before it pairs
// (tunnel.md §5.2).
func (d *Server) ServeXPC(ctx context.Context, nc net.Conn, cfg *xpc.Config) error {
	var c2 xpc.Config
	if cfg != nil {
		c2 = *cfg
	}
	if c2.HeaderReply == nil {
		c2.HeaderReply = xpc.NewDict("ServiceVersion", xpc.Int64(TunnelServiceVersion))
	}
	c, err := xpc.Server(ctx, nc, &c2)
	if err != nil {
		return fmt.Errorf("pairing: device: RemoteXPC set-up: %w", err)
	}
	t := NewXPC(c)
	defer t.Close()
	return d.Serve(ctx, t)
}

// toXPC converts a tree value; maps become dictionaries with sorted keys.
func toXPC(v any) (xpc.Value, error) {
	switch x := v.(type) {
	case map[string]any:
		d := xpc.NewDict()
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			e, err := toXPC(x[k])
			if err != nil {
				return nil, err
			}
			d.Set(k, e)
		}
		return d, nil
	case []any:
		a := make(xpc.Array, len(x))
		for i, e := range x {
			var err error
			if a[i], err = toXPC(e); err != nil {
				return nil, err
			}
		}
		return a, nil
	case string:
		return xpc.String(x), nil
	case bool:
		return xpc.Bool(x), nil
	case int64:
		return xpc.Int64(x), nil
	case int:
		return xpc.Int64(x), nil
	case uint64:
		return xpc.Uint64(x), nil
	case float64:
		return xpc.Double(x), nil
	case []byte:
		return xpc.Data(x), nil
	case nil:
		return xpc.Null{}, nil
	}
	return nil, fmt.Errorf("pairing: no XPC form for %T", v)
}

// maxTreeDepth bounds the nesting fromXPC follows; envelopes nest about
// eight levels.
const maxTreeDepth = 32

// fromXPC converts a received value into a tree value.
func fromXPC(v xpc.Value, depth int) (any, error) {
	if depth > maxTreeDepth {
		return nil, malformed("envelope nested deeper than %d", maxTreeDepth)
	}
	switch x := v.(type) {
	case *xpc.Dict:
		t := make(tree, x.Len())
		for k, e := range x.All() {
			c, err := fromXPC(e, depth+1)
			if err != nil {
				return nil, err
			}
			t[k] = c
		}
		return t, nil
	case xpc.Array:
		a := make([]any, len(x))
		for i, e := range x {
			var err error
			if a[i], err = fromXPC(e, depth+1); err != nil {
				return nil, err
			}
		}
		return a, nil
	case xpc.String:
		return string(x), nil
	case xpc.Bool:
		return bool(x), nil
	case xpc.Int64:
		return int64(x), nil
	case xpc.Uint64:
		return uint64(x), nil
	case xpc.Double:
		if math.IsNaN(float64(x)) {
			return nil, malformed("NaN in envelope")
		}
		return float64(x), nil
	case xpc.Data:
		return []byte(x), nil
	case xpc.Null:
		return nil, nil
	case xpc.UUID:
		return x.String(), nil
	}
	return nil, malformed("XPC %v in an envelope", v.Kind())
}
