package coredevice

import (
	"fmt"
	"strings"

	"github.com/iosmux/iosmux/xpc"
)

// Identifier prefixes (coredevice.md §2.1).
const (
	FeaturePrefix = "com.apple.coredevice.feature."
	ActionPrefix  = "com.apple.coredevice.action."
)

// Envelope keys (coredevice.md §2.1, §2.2).
const (
	KeyFeature            = "CoreDevice.featureIdentifier"
	KeyAction             = "CoreDevice.action"
	KeyActionIdentifier   = "CoreDevice.actionIdentifier"
	KeyInput              = "CoreDevice.input"
	KeyInvocation         = "CoreDevice.invocationIdentifier"
	KeyDeviceIdentifier   = "CoreDevice.deviceIdentifier"
	KeyDDIProtocolVersion = "CoreDevice.CoreDeviceDDIProtocolVersion"
	KeyCoreDeviceVersion  = "CoreDevice.coreDeviceVersion"
	KeyOutput             = "CoreDevice.output"
	KeyError              = "CoreDevice.error"
)

// Feature returns the full identifier of a feature: Feature("listapps") is
// "com.apple.coredevice.feature.listapps". A full identifier is returned
// unchanged.
func Feature(name string) string {
	if strings.HasPrefix(name, FeaturePrefix) {
		return name
	}
	return FeaturePrefix + name
}

// FeatureName is the short name of a feature identifier ("listapps").
func FeatureName(id string) string { return strings.TrimPrefix(id, FeaturePrefix) }

// Version is CoreDevice.coreDeviceVersion: the CoreDevice framework
// version the host claims.
type Version struct {
	Components []uint64
	// OriginalComponentsCount is how many components the version string
	// had (go-ios pads "348.1" to five components and says 2).
	OriginalComponentsCount int64
	String                  string
}

// DefaultVersion is what iosmux sends: pymobiledevice3's and appium's
// 629.3 with DDI protocol version 2 (coredevice.md §2.5).
var DefaultVersion = Version{Components: []uint64{629, 3}, OriginalComponentsCount: 2, String: "629.3"}

// DefaultDDIProtocolVersion goes with DefaultVersion.
const DefaultDDIProtocolVersion = 2

func (v Version) value() *xpc.Dict {
	comps := make(xpc.Array, len(v.Components))
	for i, c := range v.Components {
		comps[i] = xpc.Uint64(c)
	}
	return xpc.NewDict("components", comps, "originalComponentsCount", xpc.Int64(v.OriginalComponentsCount),
		"stringValue", xpc.String(v.String))
}

func parseVersion(d *xpc.Dict) Version {
	v := Version{String: d.String("stringValue")}
	v.OriginalComponentsCount, _ = d.Integer("originalComponentsCount")
	for _, c := range d.Array("components") {
		switch n := c.(type) {
		case xpc.Uint64:
			v.Components = append(v.Components, uint64(n))
		case xpc.Int64:
			v.Components = append(v.Components, uint64(n))
		}
	}
	return v
}

// Request is one invocation as the envelope carries it.
type Request struct {
	// Feature is the full feature identifier; empty when the request
	// names an action instead.
	Feature string
	// Action is the full action identifier (CoreDevice.actionIdentifier),
	// the alternative to a feature; empty for feature requests.
	Action string
	// Input is the feature's input; nil encodes as an empty dictionary.
	Input *xpc.Dict
	// InvocationID and DeviceID are UUIDs in text form, new for every
	// request (no reference shows the device checking the device id).
	InvocationID string
	DeviceID     string
	// DDIProtocolVersion and Version describe the host's CoreDevice.
	DDIProtocolVersion int64
	Version            Version
}

// Name is the feature's short name, or the action identifier.
func (r *Request) Name() string {
	if r.Feature != "" {
		return FeatureName(r.Feature)
	}
	return r.Action
}

// Body encodes the request in pymobiledevice3's key order (vectors cd01–cd07
// are byte for byte what it builds; the device does not care about order).
func (r *Request) Body() *xpc.Dict {
	in := r.Input
	if in == nil {
		in = xpc.NewDict()
	}
	d := xpc.NewDict(
		KeyDDIProtocolVersion, xpc.Int64(r.DDIProtocolVersion),
		KeyCoreDeviceVersion, r.Version.value(),
		KeyDeviceIdentifier, xpc.String(r.DeviceID),
		KeyInput, in,
		KeyInvocation, xpc.String(r.InvocationID),
	)
	if r.Feature != "" {
		d.Set(KeyFeature, xpc.String(r.Feature))
		d.Set(KeyAction, xpc.NewDict())
	}
	if r.Action != "" {
		d.Set(KeyActionIdentifier, xpc.String(r.Action))
	}
	return d
}

// ParseRequest reads a request body, as the device does. A body without a
// feature or action identifier, or without a dictionary input, is refused
// with CoreDeviceError 1 "Invalid request" (coredevice.md §6).
func ParseRequest(body *xpc.Dict) (*Request, error) {
	if body == nil {
		return nil, invalidRequest("the message has no body")
	}
	r := &Request{
		InvocationID: body.String(KeyInvocation),
		DeviceID:     body.String(KeyDeviceIdentifier),
		Version:      parseVersion(body.Dict(KeyCoreDeviceVersion)),
	}
	r.DDIProtocolVersion, _ = body.Integer(KeyDDIProtocolVersion)
	if v, ok := body.Get(KeyFeature).(xpc.String); ok {
		r.Feature = string(v)
	}
	if v, ok := body.Get(KeyActionIdentifier).(xpc.String); ok {
		r.Action = string(v)
	}
	if r.Feature == "" && r.Action == "" {
		return nil, invalidRequest("the request names no feature or action")
	}
	in, ok := body.Get(KeyInput).(*xpc.Dict)
	if !ok {
		return nil, invalidRequest(fmt.Sprintf("%s has no dictionary %s", r.Name(), KeyInput))
	}
	r.Input = in
	return r, nil
}

func invalidRequest(why string) *Error {
	return &Error{Domain: DomainCoreDevice, Code: CodeInvalidRequest,
		UserInfo: map[string]string{KeyDescription: "Invalid request", KeyFailureReason: why}}
}

// OutputBody is a success reply: {CoreDevice.output: v}.
func OutputBody(v xpc.Value) *xpc.Dict {
	if v == nil {
		v = xpc.NewDict()
	}
	return xpc.NewDict(KeyOutput, v)
}

// ParseReply returns a reply's output, or its CoreDevice.error as *Error.
// A reply with neither is an error too (pymobiledevice3 and idevice treat a
// missing output as failure).
func ParseReply(body *xpc.Dict) (xpc.Value, error) {
	if e, ok := body.Get(KeyError).(*xpc.Dict); ok {
		return nil, ParseError(e)
	}
	out, ok := body.Lookup(KeyOutput)
	if !ok {
		return nil, &ReplyError{Msg: fmt.Sprintf("the reply has neither %s nor %s (keys %v)", KeyOutput, KeyError, body.Keys())}
	}
	return out, nil
}

// ReplyError is a reply the host cannot read: no output and no error, or
// an output of the wrong shape.
type ReplyError struct {
	Feature string
	Msg     string
}

func (e *ReplyError) Error() string {
	if e.Feature != "" {
		return "coredevice: " + FeatureName(e.Feature) + ": unexpected reply: " + e.Msg
	}
	return "coredevice: unexpected reply: " + e.Msg
}
