package mercury

import (
	"errors"
	"strings"
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// The seventeen Pair-button iterations that derived the Pair reply
// (docs/protocols/coredevice-schema.md §4), replayed
// cumulatively: each builds the reply of that click (every earlier fix
// applied, every later one not yet) and expects the error Apple's decoder
// logged for it; the seventeenth must pass.
func TestIterationTrail(t *testing.T) {
	out := func(r *xpc.Dict) *xpc.Dict { return r.Dict(KeyOutput) }
	snap := func(r *xpc.Dict) *xpc.Dict { return out(r).Dict("updatedSnapshot") }
	info := func(r *xpc.Dict) *xpc.Dict { return snap(r).Dict("deviceInfo") }
	sid := func(r *xpc.Dict) *xpc.Dict { return info(r).Dict("serviceDeviceIdentifier") }
	uuidText := xpc.String(uuidD.String())

	// Mutations that undo a later fix; iteration n applies undo[n..16].
	undo := map[int]func(*xpc.Dict){
		16: func(r *xpc.Dict) { snap(r).Set("monotonicIdentifier", xpc.Uint64(1)) },
		15: func(r *xpc.Dict) { snap(r).Delete("monotonicIdentifier") },
		14: func(r *xpc.Dict) { info(r).Set("state", xpc.NewDict("connected", xpc.NewDict())) },
		13: func(r *xpc.Dict) { info(r).Set("identifier", uuidText) },
		12: func(r *xpc.Dict) { sid(r).Dict("uuid").Delete("domain") },
		11: func(r *xpc.Dict) { sid(r).Dict("uuid").Set("identifier", uuidText) },
		10: func(r *xpc.Dict) { sid(r).Set("uuid", xpc.NewDict("_0", uuidText, "_1", xpc.String(""))) },
		9:  func(r *xpc.Dict) { snap(r).Delete("deviceInfo") },
		8:  func(r *xpc.Dict) { snap(r).Delete("capabilityImplementations") },
		7:  func(r *xpc.Dict) { out(r).Delete("updatedSnapshot") },
		6:  func(r *xpc.Dict) { out(r).Set("outcome", xpc.NewDict("connected", xpc.NewDict())) },
		5:  func(r *xpc.Dict) { out(r).Set("outcome", xpc.String("connected")) },
		// 4: the click whose log named the type; its reply is iteration
		// 3's (the trail records no other shape for it), and the error
		// must name DeviceConnectionChangeResult, the name read from it.
		4: func(r *xpc.Dict) { r.Set(KeyOutput, xpc.Null{}) },
		3: func(r *xpc.Dict) { r.Set(KeyOutput, xpc.Null{}) },
		2: func(r *xpc.Dict) { r.Delete(KeyOutput) },
		1: func(r *xpc.Dict) { r.Set(KeyOutput, xpc.NewDict()) },
	}
	replyOf := func(iter int) *xpc.Dict {
		r := iter17Reply()
		for n := 16; n >= iter; n-- {
			if f := undo[n]; f != nil {
				f(r)
			}
		}
		return r
	}
	snapPath := KeyOutput + ".updatedSnapshot"
	infoPath := snapPath + ".deviceInfo"
	tests := []struct {
		iter  int
		kind  ErrorKind
		path  string // coding path (the container, for keyNotFound)
		key   string // missing key
		typ   string // suffix of the Swift type named
		found string // libxpc class found
		msg   string // substring of the message
	}{
		{1, DataCorrupted, KeyOutput, "", "DeviceConnectionChangeResult", "", "empty dictionary"},
		{2, ValueNotFound, "<root>", KeyOutput, "", "", ""},
		{3, TypeMismatch, KeyOutput, "", "DeviceConnectionChangeResult", "OS_xpc_null", "dictionary required"},
		{4, TypeMismatch, KeyOutput, "", "CoreDevice.DeviceConnectionChangeResult", "", ""},
		{5, TypeMismatch, KeyOutput + ".outcome", "", "Outcome.CodingKeys", "OS_xpc_string", "dictionary required"},
		{6, TypeMismatch, KeyOutput + ".outcome", "", "Outcome", "", "Invalid number of keys, expected one"},
		{7, KeyNotFound, KeyOutput, "updatedSnapshot", "", "", ""},
		{8, KeyNotFound, snapPath, "capabilityImplementations", "", "", ""},
		{9, KeyNotFound, snapPath, "deviceInfo", "", "", ""},
		{10, KeyNotFound, infoPath + ".serviceDeviceIdentifier.uuid", "identifier", "", "", ""},
		{11, TypeMismatch, infoPath + ".serviceDeviceIdentifier.uuid.identifier", "", "UUID", "OS_xpc_string", "Expected to decode UUID but found a OS_xpc_string instead."},
		{12, KeyNotFound, infoPath + ".serviceDeviceIdentifier.uuid", "domain", "", "", ""},
		{13, TypeMismatch, infoPath + ".identifier", "", "UUID", "OS_xpc_string", ""},
		{14, TypeMismatch, infoPath + ".state", "", "String", "OS_xpc_dictionary", ""},
		{15, KeyNotFound, snapPath, "monotonicIdentifier", "", "", ""},
		{16, TypeMismatch, snapPath + ".monotonicIdentifier", "", "Swift.Int64", "OS_xpc_uint64", "Expected to decode Int64 but found a OS_xpc_uint64 instead."},
	}
	for _, tt := range tests {
		t.Run(itoa(tt.iter), func(t *testing.T) {
			err := ValidateReply(reqPair(), replyOf(tt.iter), DeviceConnectionChangeResultType)
			var de *DecodingError
			if !errors.As(err, &de) {
				t.Fatalf("iteration %d: got %v, want a DecodingError", tt.iter, err)
			}
			if de.Kind != tt.kind || de.PathString() != tt.path {
				t.Fatalf("iteration %d: got %v, want %v at %s", tt.iter, de, tt.kind, tt.path)
			}
			if tt.key != "" && de.Key != tt.key {
				t.Errorf("iteration %d: key %q, want %q", tt.iter, de.Key, tt.key)
			}
			if tt.typ != "" && !strings.HasSuffix(de.Type, tt.typ) {
				t.Errorf("iteration %d: type %q, want …%s", tt.iter, de.Type, tt.typ)
			}
			if tt.found != "" && de.Found != tt.found {
				t.Errorf("iteration %d: found %q, want %q", tt.iter, de.Found, tt.found)
			}
			if !strings.Contains(de.Msg, tt.msg) {
				t.Errorf("iteration %d: message %q lacks %q", tt.iter, de.Msg, tt.msg)
			}
		})
	}
	t.Run("17", func(t *testing.T) {
		if err := ValidateReply(reqPair(), replyOf(17), DeviceConnectionChangeResultType); err != nil {
			t.Fatalf("iteration 17 (accepted by CDS): %v", err)
		}
	})
	// Iteration 10's keyNotFound names the private CodingKeys of
	// DeviceIdentifier's uuid case, as Apple's log did.
	err := ValidateReply(reqPair(), replyOf(10), DeviceConnectionChangeResultType)
	if !strings.Contains(err.Error(), "UuidCodingKeys.identifier") {
		t.Errorf("iteration 10 error %q does not name UuidCodingKeys.identifier", err)
	}
}

func itoa(n int) string {
	if n < 10 {
		return "iter0" + string(rune('0'+n))
	}
	return "iter" + string(rune('0'+n/10)) + string(rune('0'+n%10))
}
