package mercury

import (
	"fmt"

	"github.com/iosmux/iosmux/xpc"
)

// Request is a Mercury action invocation as CDS received it: a flat
// dictionary whose routing keys are strings (not Codable-decoded), with the
// action's Codable input under CoreDevice.input.
type Request struct {
	Raw        *xpc.Dict
	Action     string   // CoreDevice.actionIdentifier
	DeviceText string   // CoreDevice.deviceIdentifier as sent
	Device     xpc.UUID // the same, parsed (any case)
	Input      *xpc.Dict
}

// ParseRequest reads an action invocation. A message without
// CoreDevice.actionIdentifier is not an action (check-in requests and
// other Codable envelopes share the connection).
func ParseRequest(d *xpc.Dict) (*Request, error) {
	if d == nil {
		return nil, fmt.Errorf("mercury: no message")
	}
	a, ok := d.Get(KeyActionIdentifier).(xpc.String)
	if !ok {
		return nil, fmt.Errorf("mercury: not an action invocation (no string %s)", KeyActionIdentifier)
	}
	r := &Request{Raw: d, Action: string(a)}
	for _, k := range []string{KeyInvocationIdentifier, KeyDeviceIdentifier} {
		if _, ok := d.Get(k).(xpc.String); !ok {
			return nil, fmt.Errorf("mercury: action %s: %s is %s, want a string", a, k, kindOf(d.Get(k)))
		}
	}
	if _, ok := d.Get(KeyCoreDeviceVersion).(*xpc.Dict); !ok {
		return nil, fmt.Errorf("mercury: action %s: %s is %s, want a dictionary", a, KeyCoreDeviceVersion, kindOf(d.Get(KeyCoreDeviceVersion)))
	}
	r.DeviceText = d.String(KeyDeviceIdentifier)
	u, err := xpc.ParseUUID(r.DeviceText)
	if err != nil {
		return nil, fmt.Errorf("mercury: action %s: device identifier: %w", a, err)
	}
	r.Device = u
	in, ok := d.Get(KeyInput).(*xpc.Dict)
	if !ok {
		return nil, fmt.Errorf("mercury: action %s: %s is %s, want a dictionary", a, KeyInput, kindOf(d.Get(KeyInput)))
	}
	r.Input = in
	return r, nil
}

func kindOf(v xpc.Value) string {
	if v == nil {
		return "absent"
	}
	return v.Kind().String()
}

// reply is the reply dictionary for r: the echoed keys, typed values
// unchanged, then CoreDevice.output.
func (r *Request) reply(output xpc.Value) *xpc.Dict {
	d := xpc.NewDict()
	for _, k := range echoedKeys {
		d.Set(k, Clone(r.Raw.Get(k)))
	}
	return d.Set(KeyOutput, output)
}

// Clone returns a deep copy of v (dictionaries, arrays and byte slices are
// not shared), so a reply never aliases the request it echoes.
func Clone(v xpc.Value) xpc.Value {
	switch v := v.(type) {
	case *xpc.Dict:
		if v == nil {
			return v
		}
		d := xpc.NewDict()
		for k, e := range v.All() {
			d.Set(k, Clone(e))
		}
		return d
	case xpc.Array:
		a := make(xpc.Array, len(v))
		for i, e := range v {
			a[i] = Clone(e)
		}
		return a
	case xpc.Data:
		return append(xpc.Data(nil), v...)
	case xpc.Opaque:
		return xpc.Opaque{Type: v.Type, Body: append([]byte(nil), v.Body...)}
	case xpc.FileTransfer:
		return xpc.FileTransfer{ID: v.ID, Object: Clone(v.Object)}
	}
	return v
}
