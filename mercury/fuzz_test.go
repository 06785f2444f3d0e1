package mercury

import (
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// FuzzAnswer feeds decoded socket values to the validator and to Answer:
// nothing panics, and whatever Answer replies validates.
func FuzzAnswer(f *testing.F) {
	for _, v := range []xpc.Value{reqPair(), iter17Reply(), request(ActionPrefix+"listusageassertions", nil),
		request(ActionPrefix+"acquireusageassertion", xpc.NewDict("e", xpc.NewHandle(xpc.KindEndpoint, 3)))} {
		b, _ := xpc.AppendValue(nil, v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := xpc.DecodeOptions{Handles: true, MaxDepth: 16}.DecodeValue(b)
		if err != nil {
			return
		}
		for _, typ := range []*Type{DeviceConnectionChangeResultType, DeviceStateSnapshotType, DeviceIdentifierType, VoidType} {
			_ = Validate(typ, v)
		}
		d, ok := v.(*xpc.Dict)
		if !ok {
			return
		}
		_ = ValidateReply(reqPair(), d, DeviceConnectionChangeResultType)
		res := Answer(d, factsAll())
		if res.Disposition == Reply {
			a, _ := LookupAction(res.Action)
			if err := ValidateReply(d, res.Reply, a.Output); err != nil {
				t.Fatalf("reply does not validate: %v", err)
			}
		}
	})
}
