package mercury

import (
	"errors"
	"fmt"

	"github.com/iosmux/iosmux/xpc"
)

// ActionPrefix prefixes the short action names. It is confirmed for
// acquireusageassertion only; the other fourteen are assumed to share it.
const ActionPrefix = "com.apple.coredevice.action."

// Shape is how well an action's Output container is known.
type Shape uint8

const (
	// ShapeConfirmed: an accepted reply (or a decoded success) shows it.
	ShapeConfirmed Shape = iota + 1
	// ShapeSymbols: read from demangled symbols only.
	ShapeSymbols
	// ShapeConflicting: the sources disagree (Void or
	// DeviceConnectionChangeResult).
	ShapeConflicting
)

// Action is one allow-listed Mercury action and how iosmux answers it.
type Action struct {
	ID     string // full wire id
	Short  string
	Output *Type // nil while the container is disputed
	Shape  Shape
	// answer computes the output (and follow-ups) from facts; nil means
	// the action is always passed through, for Why.
	answer func(r *Request, f *Facts) (xpc.Value, []Followup, error)
	Why    string
}

// Disposition is what the dylib does with a request.
type Disposition uint8

const (
	// Passthrough: call CDS's own implementation and return its result.
	Passthrough Disposition = iota
	// Reply: send Result.Reply (then run Result.Followups) instead.
	Reply
)

func (d Disposition) String() string {
	if d == Reply {
		return "reply"
	}
	return "passthrough"
}

// FollowupKind is a side effect the dylib runs after sending a reply; the
// values are the socket message kinds (docs/protocols/coredevice-bridge.md §4).
type FollowupKind uint8

const (
	FollowupSideChannelSend FollowupKind = 0x30
	FollowupBroadcastEvent  FollowupKind = 0x31
)

// Followup is one side effect.
type Followup struct {
	Kind    FollowupKind
	Payload *xpc.Dict
}

// Result is the answer to one request.
type Result struct {
	Disposition Disposition
	Reply       *xpc.Dict // top-level keys to set on the reply (Reply only)
	Followups   []Followup
	Action      string // full id, "" for a non-action
	// Reason says why a request is passed through (for the log).
	Reason string
	// Notes are facts left out of the reply for bad input (for the log).
	Notes []string
}

func passthrough(action, format string, args ...any) Result {
	return Result{Disposition: Passthrough, Action: action, Reason: fmt.Sprintf(format, args...)}
}

// ErrNoSideChannel means acquireusageassertion's input carried no client
// endpoint to send the fulfilment on.
var ErrNoSideChannel = errors.New("mercury: no endpoint in the input")

// Actions is the allow-list, in the order of docs/protocols/coredevice-schema.md
// §6.
var Actions = []*Action{
	{Short: "pair", Output: DeviceConnectionChangeResultType, Shape: ShapeConfirmed, answer: answerPair},
	{Short: "unpair", Shape: ShapeConflicting, Why: "Output container disputed (Void or DeviceConnectionChangeResult) and the host's pairing is not removed on Xcode's request"},
	{Short: "connect", Shape: ShapeConflicting, Why: "Output container disputed (Void or DeviceConnectionChangeResult)"},
	{Short: "disconnect", Shape: ShapeConflicting, Why: "Output container disputed and iosmux does not drop its tunnel on Xcode's request"},
	{Short: "acquireusageassertion", Output: VoidType, Shape: ShapeConfirmed, answer: answerAcquireUsageAssertion},
	{Short: "listusageassertions", Output: arrayOf(UsageAssertionInformationType), Shape: ShapeSymbols, answer: answerListUsageAssertions},
	{Short: "tags", Output: VoidType, Shape: ShapeSymbols, Why: "input schema unknown: the tags cannot be read"},
	{Short: "gettrainname", Output: GetTrainNameOutputType, Shape: ShapeSymbols, Why: "no device source for the OS train name"},
	{Short: "darwinnotificationobserve", Output: VoidType, Shape: ShapeSymbols, Why: "no delivery path for observed notifications back to Xcode"},
	{Short: "darwinnotificationpost", Output: arrayOf(DarwinNotificationPostActionResultType), Shape: ShapeSymbols,
		Why: "DarwinNotificationPostActionResult schema unknown, and posting needs the device's notification proxy"},
	{Short: "enableddiservices", Output: EnableDeveloperDiskImageResultType, Shape: ShapeSymbols},
	{Short: "disableddiservicesaction", Output: DeviceStateSnapshotType, Shape: ShapeSymbols, answer: answerDisableDDIServices},
	{Short: "fetchddimetadata", Output: DDIMetadataType, Shape: ShapeSymbols},
	{Short: "updatehostddis", Output: UpdateHostDDIsResultType, Shape: ShapeSymbols, Why: "host-local work CDS does itself"},
	{Short: "removehostddis", Output: RemoveHostDDIsResultType, Shape: ShapeSymbols, Why: "host-local work CDS does itself"},
}

func init() {
	for _, a := range Actions {
		a.ID = ActionPrefix + a.Short
	}
}

// LookupAction returns the allow-listed action with full id.
func LookupAction(id string) (*Action, bool) {
	for _, a := range Actions {
		if a.ID == id {
			return a, true
		}
	}
	return nil, false
}

// AllowList is the full ids of the allow-listed actions, the dylib's
// fast-path filter.
func AllowList() []string {
	out := make([]string, len(Actions))
	for i, a := range Actions {
		out[i] = a.ID
	}
	return out
}

// Answer decides what to do with one message CDS received, for the device
// described by f (nil when the message names no iosmux device). It replies
// only to an allow-listed action on this device whose Output is known and
// whose truthful answer can be built from f, after the whole reply
// validated; everything else is Passthrough with a reason.
func Answer(msg *xpc.Dict, f *Facts) Result {
	if _, ok := msg.Get(KeyActionIdentifier).(xpc.String); !ok {
		return passthrough("", "not an action invocation")
	}
	r, err := ParseRequest(msg)
	if err != nil {
		return passthrough(msg.String(KeyActionIdentifier), "%v", err)
	}
	a, ok := LookupAction(r.Action)
	if !ok {
		return passthrough(r.Action, "not allow-listed")
	}
	if f == nil || f.DeviceUUID.IsZero() || r.Device != f.DeviceUUID {
		return passthrough(r.Action, "device %s is not an iosmux device", r.DeviceText)
	}
	switch {
	case f.Tunnel != TunnelUp:
		return passthrough(r.Action, "tunnel %v: no honest device state", f.Tunnel)
	case a.Output == nil:
		return passthrough(r.Action, "%s", a.Why)
	case !a.Output.Known():
		return passthrough(r.Action, "Output schema %s unknown", a.Output.Name)
	case a.answer == nil:
		return passthrough(r.Action, "%s", a.Why)
	}
	out, follow, err := a.answer(r, f)
	if err != nil {
		return passthrough(r.Action, "%v", err)
	}
	reply := r.reply(out)
	if err := ValidateReply(msg, reply, a.Output); err != nil {
		return passthrough(r.Action, "built reply does not validate: %v", err)
	}
	res := Result{Disposition: Reply, Reply: reply, Followups: follow, Action: r.Action}
	if _, notes, _ := DeviceInfo(f); len(notes) > 0 {
		res.Notes = notes
	}
	return res
}

// answerPair: success only when the host's pairing with the device is
// verified; a failure cannot be encoded (NSErrorContainer), so any other
// state passes through.
func answerPair(_ *Request, f *Facts) (xpc.Value, []Followup, error) {
	if f.PairRecord != PairVerified {
		return nil, nil, fmt.Errorf("pairing %v, not verified: only a failure would be true", f.PairRecord)
	}
	v, _, err := DeviceConnectionChangeResult(OutcomeSuccess, f)
	return v, nil, err
}

// answerAcquireUsageAssertion: success iff the tunnel is up, then the
// AssertionFulfilledMessage on the client's endpoint. Its body was never
// captured, so today this always passes through.
func answerAcquireUsageAssertion(r *Request, f *Facts) (xpc.Value, []Followup, error) {
	if f.Tunnel != TunnelUp {
		return nil, nil, fmt.Errorf("tunnel %v", f.Tunnel)
	}
	ep, ok := findEndpoint(r.Input)
	if !ok {
		return nil, nil, ErrNoSideChannel
	}
	afm, err := AssertionFulfilledMessage(f)
	if err != nil {
		return nil, nil, err
	}
	send := xpc.NewDict("endpoint", ep, "message", afm, "keepOpen", xpc.Bool(false))
	return xpc.NewDict(), []Followup{{Kind: FollowupSideChannelSend, Payload: send}}, nil
}

// AssertionFulfilledMessage would build CoreDevice.AssertionFulfilledMessage
// for the side channel; its schema was never captured.
func AssertionFulfilledMessage(*Facts) (*xpc.Dict, error) {
	return nil, errors.Join(ErrSchemaUnknown, errors.New("mercury: AssertionFulfilledMessage body never captured"))
}

// findEndpoint returns the first endpoint handle in v (which input key
// carries the client's endpoint is unknown).
func findEndpoint(v xpc.Value) (xpc.Opaque, bool) {
	switch v := v.(type) {
	case xpc.Opaque:
		if _, ok := v.Handle(); ok && v.Type == xpc.KindEndpoint {
			return v, true
		}
	case *xpc.Dict:
		for _, e := range v.All() {
			if o, ok := findEndpoint(e); ok {
				return o, true
			}
		}
	case xpc.Array:
		for _, e := range v {
			if o, ok := findEndpoint(e); ok {
				return o, true
			}
		}
	}
	return xpc.Opaque{}, false
}

// answerListUsageAssertions: the list is iosmux's to give only when
// iosmux grants the assertions. While acquireusageassertion passes through
// (its AssertionFulfilledMessage was never captured), CDS's own code
// grants them and keeps them where iosmux cannot see: an empty list from
// iosmux could contradict it, so the request passes through too. Once
// iosmux grants them, an empty registry is answered [] (a non-empty one
// needs UsageAssertionInformation, never captured).
func answerListUsageAssertions(_ *Request, f *Facts) (xpc.Value, []Followup, error) {
	if _, err := AssertionFulfilledMessage(f); err != nil {
		return nil, nil, fmt.Errorf("CDS grants usage assertions itself while acquireusageassertion passes through, so only its list is true: %w", err)
	}
	if f.UsageAssertions != 0 {
		return nil, nil, fmt.Errorf("%w: %d assertions but UsageAssertionInformation never captured", ErrSchemaUnknown, f.UsageAssertions)
	}
	return xpc.Array{}, nil, nil
}

// answerDisableDDIServices: the snapshot, when DDI services are already
// not available (nothing to disable, the reply is the truth); when they
// are, iosmux disabled nothing, so CDS's own code runs.
func answerDisableDDIServices(_ *Request, f *Facts) (xpc.Value, []Followup, error) {
	if avail, ok := DDIAvailable(f); !ok || avail {
		return nil, nil, errors.New("DDI services available (or unknown): iosmux does not disable them")
	}
	v, _, err := DeviceStateSnapshot(f)
	return v, nil, err
}
