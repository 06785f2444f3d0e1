package dylib

import (
	"fmt"
	"slices"
	"strings"

	"github.com/iosmux/iosmux/xpc"
)

// The message payloads (docs/protocols/coredevice-bridge.md §4).
// Each has a Value (its payload dictionary) and a parse function that
// rejects a missing or mistyped required key.

// Build identifies the Apple binaries the dylib found in CDS (image UUIDs
// or hashes): Go's answers and the dylib's patch offsets depend on them.
type Build struct {
	CoreDevice          string
	CoreDeviceUtilities string
	Mercury             string
}

func (b Build) String() string {
	return fmt.Sprintf("CoreDevice %s, CoreDeviceUtilities %s, Mercury %s", b.CoreDevice, b.CoreDeviceUtilities, b.Mercury)
}

// ID is the build as one word, "COREDEVICE,COREDEVICEUTILITIES,MERCURY",
// the form ParseBuild reads (a command-line value).
func (b Build) ID() string {
	return b.CoreDevice + "," + b.CoreDeviceUtilities + "," + b.Mercury
}

// ParseBuild reads Build.ID's form: three non-empty ids separated by
// commas.
func ParseBuild(s string) (Build, error) {
	p := strings.Split(s, ",")
	if len(p) != 3 || slices.ContainsFunc(p, func(x string) bool { return strings.TrimSpace(x) == "" }) {
		return Build{}, fmt.Errorf("dylib: build %q: want COREDEVICE,COREDEVICEUTILITIES,MERCURY (the image UUIDs the dylib reports)", s)
	}
	return Build{CoreDevice: strings.TrimSpace(p[0]), CoreDeviceUtilities: strings.TrimSpace(p[1]), Mercury: strings.TrimSpace(p[2])}, nil
}

// Hello is the dylib's greeting.
type Hello struct {
	PID, UID     int64
	Arch         string
	DylibVersion string
	Protocol     int64
	Build        Build
	// Hooks reports which hooks are installed (gambit, mdProxy, …).
	Hooks *xpc.Dict
}

func (h Hello) Value() *xpc.Dict {
	hooks := h.Hooks
	if hooks == nil {
		hooks = xpc.NewDict()
	}
	return xpc.NewDict("pid", xpc.Int64(h.PID), "uid", xpc.Int64(h.UID), "arch", xpc.String(h.Arch),
		"dylibVersion", xpc.String(h.DylibVersion), "protocol", xpc.Int64(h.Protocol),
		"build", xpc.NewDict("coreDevice", xpc.String(h.Build.CoreDevice),
			"coreDeviceUtilities", xpc.String(h.Build.CoreDeviceUtilities), "mercury", xpc.String(h.Build.Mercury)),
		"hooks", hooks)
}

// HelloAck is iosmux's answer: the protocol version, the allow-listed
// action ids and the devices already attached (the dylib's fast path).
type HelloAck struct {
	Protocol  int64
	Allow     []string
	DeviceIDs []string
}

func (a HelloAck) Value() *xpc.Dict {
	return xpc.NewDict("protocol", xpc.Int64(a.Protocol), "allow", stringArray(a.Allow), "deviceIds", stringArray(a.DeviceIDs))
}

// RemoteDevice is DEVICE_ATTACH and DEVICE_UPDATE (a full replacement).
type RemoteDevice struct {
	UUID xpc.UUID
	// ServiceIdentifier is the DeviceIdentifier value the device is
	// registered under ({"uuid": {"identifier", "domain"}}).
	ServiceIdentifier *xpc.Dict
	// Properties are the RSD Handshake Properties plus "Services", as CDS
	// reads them from an OS_remote_device.
	Properties *xpc.Dict
	Name       *string
	// OSState is remote_device_state_t: 1 attached, 2 connected,
	// 3 disconnected.
	OSState int64
}

// remote_device_state_t values.
const (
	OSStateAttached     int64 = 1
	OSStateConnected    int64 = 2
	OSStateDisconnected int64 = 3
)

func (d RemoteDevice) Value() *xpc.Dict {
	v := xpc.NewDict("uuid", d.UUID, "serviceIdentifier", orEmpty(d.ServiceIdentifier),
		"properties", orEmpty(d.Properties))
	if d.Name != nil {
		v.Set("name", xpc.String(*d.Name))
	}
	return v.Set("osState", xpc.Int64(d.OSState))
}

// ActionResponse answers ACTION_REQUEST.
type ActionResponse struct {
	// Disposition is "reply" or "passthrough".
	Disposition string
	Reply       *xpc.Dict
	Followups   []Followup
}

// Followup is a SIDECHANNEL_SEND or BROADCAST_EVENT run after the reply.
type Followup struct {
	Kind    Kind
	Payload *xpc.Dict
}

const (
	DispositionReply       = "reply"
	DispositionPassthrough = "passthrough"
)

func (r ActionResponse) Value() *xpc.Dict {
	v := xpc.NewDict("disposition", xpc.String(r.Disposition))
	if r.Reply != nil {
		v.Set("reply", r.Reply)
	}
	fs := xpc.Array{}
	for _, f := range r.Followups {
		fs = append(fs, xpc.NewDict("kind", xpc.Int64(f.Kind), "payload", orEmpty(f.Payload)))
	}
	return v.Set("followups", fs)
}

// Log is a dylib log line.
type Log struct{ Level, Msg string }

func (l Log) Value() *xpc.Dict {
	return xpc.NewDict("level", xpc.String(l.Level), "msg", xpc.String(l.Msg))
}

// Error is a protocol error report; the connection closes after it.
type Error struct{ Code, Msg string }

func (e Error) Value() *xpc.Dict {
	return xpc.NewDict("code", xpc.String(e.Code), "msg", xpc.String(e.Msg))
}

func orEmpty(d *xpc.Dict) *xpc.Dict {
	if d == nil {
		return xpc.NewDict()
	}
	return d
}

func stringArray(ss []string) xpc.Array {
	a := make(xpc.Array, len(ss))
	for i, s := range ss {
		a[i] = xpc.String(s)
	}
	return a
}

// reader checks the keys of one payload.
type reader struct {
	kind Kind
	d    *xpc.Dict
	err  error
}

func newReader(k Kind, v xpc.Value) *reader {
	r := &reader{kind: k}
	d, ok := v.(*xpc.Dict)
	if !ok {
		r.err = &ProtocolError{Code: "message", Msg: fmt.Sprintf("%v payload is not a dictionary", k)}
	}
	r.d = d
	return r
}

func (r *reader) get(key string, want xpc.Kind, optional bool) xpc.Value {
	if r.err != nil {
		return nil
	}
	v, ok := r.d.Lookup(key)
	if !ok && optional {
		return nil
	}
	if !ok || v.Kind() != want {
		got := "absent"
		if ok {
			got = v.Kind().String()
		}
		r.err = &ProtocolError{Code: "message", Msg: fmt.Sprintf("%v: %s is %s, want %v", r.kind, key, got, want)}
		return nil
	}
	return v
}

func (r *reader) str(key string) string {
	s, _ := r.get(key, xpc.KindString, false).(xpc.String)
	return string(s)
}
func (r *reader) i64(key string) int64 {
	n, _ := r.get(key, xpc.KindInt64, false).(xpc.Int64)
	return int64(n)
}
func (r *reader) dict(key string) *xpc.Dict {
	d, _ := r.get(key, xpc.KindDict, false).(*xpc.Dict)
	return d
}
func (r *reader) strs(key string) []string {
	a, _ := r.get(key, xpc.KindArray, false).(xpc.Array)
	out := make([]string, 0, len(a))
	for _, e := range a {
		s, ok := e.(xpc.String)
		if !ok && r.err == nil {
			r.err = &ProtocolError{Code: "message", Msg: fmt.Sprintf("%v: %s holds a %v", r.kind, key, e.Kind())}
		}
		out = append(out, string(s))
	}
	return out
}

// ParseHello reads a HELLO payload.
func ParseHello(v xpc.Value) (Hello, error) {
	r := newReader(KindHello, v)
	h := Hello{PID: r.i64("pid"), UID: r.i64("uid"), Arch: r.str("arch"), DylibVersion: r.str("dylibVersion"),
		Protocol: r.i64("protocol")}
	b := newReader(KindHello, r.dict("build"))
	if r.err == nil {
		h.Build = Build{CoreDevice: b.str("coreDevice"), CoreDeviceUtilities: b.str("coreDeviceUtilities"), Mercury: b.str("mercury")}
		r.err = b.err
	}
	h.Hooks = r.dict("hooks")
	return h, r.err
}

// ParseHelloAck reads a HELLO_ACK payload.
func ParseHelloAck(v xpc.Value) (HelloAck, error) {
	r := newReader(KindHelloAck, v)
	a := HelloAck{Protocol: r.i64("protocol"), Allow: r.strs("allow"), DeviceIDs: r.strs("deviceIds")}
	return a, r.err
}

// ParseDevice reads a DEVICE_ATTACH or DEVICE_UPDATE payload.
func ParseDevice(k Kind, v xpc.Value) (RemoteDevice, error) {
	r := newReader(k, v)
	u, _ := r.get("uuid", xpc.KindUUID, false).(xpc.UUID)
	d := RemoteDevice{UUID: u, ServiceIdentifier: r.dict("serviceIdentifier"), Properties: r.dict("properties"),
		OSState: r.i64("osState")}
	if s, ok := r.get("name", xpc.KindString, true).(xpc.String); ok {
		n := string(s)
		d.Name = &n
	}
	return d, r.err
}

// DetachValue is a DEVICE_DETACH payload.
func DetachValue(u xpc.UUID) *xpc.Dict { return xpc.NewDict("uuid", u) }

// ParseDetach reads a DEVICE_DETACH payload.
func ParseDetach(v xpc.Value) (xpc.UUID, error) {
	r := newReader(KindDeviceDetach, v)
	u, _ := r.get("uuid", xpc.KindUUID, false).(xpc.UUID)
	return u, r.err
}

// RequestValue is an ACTION_REQUEST payload.
func RequestValue(req *xpc.Dict) *xpc.Dict { return xpc.NewDict("request", req) }

// ParseRequest reads an ACTION_REQUEST payload.
func ParseRequest(v xpc.Value) (*xpc.Dict, error) {
	r := newReader(KindActionRequest, v)
	d := r.dict("request")
	return d, r.err
}

// ParseActionResponse reads an ACTION_RESPONSE payload. A reply
// disposition without a reply dictionary is an error.
func ParseActionResponse(v xpc.Value) (ActionResponse, error) {
	r := newReader(KindActionResponse, v)
	a := ActionResponse{Disposition: r.str("disposition")}
	a.Reply, _ = r.get("reply", xpc.KindDict, true).(*xpc.Dict)
	fs, _ := r.get("followups", xpc.KindArray, false).(xpc.Array)
	if r.err != nil {
		return a, r.err
	}
	switch {
	case a.Disposition == DispositionReply && a.Reply == nil:
		return a, &ProtocolError{Code: "message", Msg: "ACTION_RESPONSE: reply disposition without reply"}
	case a.Disposition != DispositionReply && a.Disposition != DispositionPassthrough:
		return a, &ProtocolError{Code: "message", Msg: fmt.Sprintf("ACTION_RESPONSE: disposition %q", a.Disposition)}
	}
	for i, e := range fs {
		fr := newReader(KindActionResponse, e)
		k := fr.i64("kind")
		p := fr.dict("payload")
		if fr.err != nil {
			return a, fmt.Errorf("followup %d: %w", i, fr.err)
		}
		if Kind(k) != KindSideChannelSend && Kind(k) != KindBroadcastEvent {
			return a, &ProtocolError{Code: "message", Msg: fmt.Sprintf("followup %d: kind %#x", i, k)}
		}
		a.Followups = append(a.Followups, Followup{Kind: Kind(k), Payload: p})
	}
	return a, nil
}

// ParseLog reads a LOG payload.
func ParseLog(v xpc.Value) (Log, error) {
	r := newReader(KindLog, v)
	l := Log{Level: r.str("level"), Msg: r.str("msg")}
	return l, r.err
}

// ParseError reads an ERROR payload.
func ParseError(v xpc.Value) (Error, error) {
	r := newReader(KindError, v)
	e := Error{Code: r.str("code"), Msg: r.str("msg")}
	return e, r.err
}
